// SPDX-License-Identifier: MIT
//! The tags read from the host (`--auto-tags`): architecture, OS, GPUs,
//! environment; read bounded, under a `root` tests can point elsewhere.

use super::{check_tag, tag_problem};
use crate::error::{Error, Result};
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
/// tool is built for.
const ARCHES: &[&str] = &["x86_64", "aarch64", "ppc64le"];

/// What the `gpu` item can produce.
const GPU_TAGS: &[&str] = &["gpu", "nvidia", "amd"];

/// The largest host fact file read (os-release, a kfd node's properties);
/// the real ones are well under 4 KiB.
const FACT_CAP: u64 = 64 * 1024;

/// At most this many GPU entries (kfd topology nodes) are looked at.
const MAX_ENTRIES: usize = 4096;

/// The `--auto-tags` items.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Arch,
    Os,
    Gpu,
    Env(String),
}

impl Item {
    /// An item of `--auto-tags`, or a usage error.
    fn parse(item: &str) -> Result<Item> {
        match item {
            "arch" => Ok(Item::Arch),
            "os" => Ok(Item::Os),
            "gpu" => Ok(Item::Gpu),
            _ => match item.strip_prefix("env:") {
                Some(name) if !name.is_empty() && !name.contains(['=', '\0']) => {
                    Ok(Item::Env(name.to_string()))
                }
                Some(_) => Err(Error::usage(format!(
                    "invalid --auto-tags item {item:?}: env: needs the name of an environment variable (env:SITE)"
                ))),
                None => Err(Error::usage(format!(
                    "invalid --auto-tags item {item:?}: expected arch, os, gpu or env:NAME"
                ))),
            },
        }
    }
}

/// Tags read from the host (`--auto-tags`), and what is needed to tell,
/// without any state, which tags in GitLab this host may have set before
/// ([`AutoTags::could_set`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoTags {
    /// The tags, in the order of the list (an item's own tags in a fixed
    /// order: `gpu`, then `nvidia`, then `amd`).
    pub tags: Vec<String>,
    /// `arch` was asked for.
    arch: bool,
    /// `os` was asked for: this host's os-release `ID` (`None` when it has
    /// none, or when `os` was not asked for).
    os_id: Option<String>,
    /// `gpu` was asked for.
    gpu: bool,
}

impl AutoTags {
    /// The tags of `items` (`--auto-tags`, split), read under `sysroot`
    /// (`/`; tests point it at a fixture tree), with `env` looking up
    /// environment variables. An unknown item, or an `env:NAME` whose value
    /// GitLab would split or reject, is a usage error. A fact that cannot
    /// be read gives no tag and a warning: a missing OS tag must not keep
    /// the runner from starting.
    pub fn detect(
        items: &[String],
        sysroot: &Path,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<AutoTags> {
        let items = items
            .iter()
            .map(|i| Item::parse(i))
            .collect::<Result<Vec<_>>>()?;
        let mut auto = AutoTags::default();
        let mut found = Vec::new();
        for item in &items {
            match item {
                Item::Arch => {
                    auto.arch = true;
                    found.push(arch(sysroot));
                }
                Item::Os => {
                    if let Some((id, tag)) = os(sysroot) {
                        auto.os_id = Some(id);
                        found.extend(tag);
                    }
                }
                Item::Gpu => {
                    auto.gpu = true;
                    found.extend(gpus(sysroot).into_iter().map(String::from));
                }
                Item::Env(name) => found.extend(env_tag(name, env)?),
            }
        }
        for t in found {
            if !auto.tags.contains(&t) {
                auto.tags.push(t);
            }
        }
        if !items.is_empty() {
            log::debug!("tags from the host: {}", auto.tags.join(","));
        }
        Ok(auto)
    }

    /// Could one of the auto-tag kinds asked for have produced `tag`, on
    /// this host or this host with other hardware or another release of
    /// its OS? `arch`: `x86_64`, `aarch64`, `ppc64le`; `os`: this host's
    /// os-release `ID` followed by one or more digits (`rhel8` for `rhel`,
    /// never the bare `rhel` an admin may have added); `gpu`: `gpu`,
    /// `nvidia`, `amd`. Never for an `env:NAME` value: nothing says which
    /// values it had.
    pub fn could_set(&self, tag: &str) -> bool {
        (self.arch && ARCHES.contains(&tag))
            || self.os_id.as_deref().is_some_and(|id| {
                tag.strip_prefix(id)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            || (self.gpu && GPU_TAGS.contains(&tag))
    }
}

/// `uname -m`, without a libc call: `/proc/sys/kernel/arch` (Linux 6.1 and
/// later), else the architecture this binary was built for, by its
/// `uname -m` name.
fn arch(sysroot: &Path) -> String {
    let path = sysroot.join("proc/sys/kernel/arch");
    if let Some(text) = read_fact(&path) {
        let a = text.trim();
        match tag_problem(a) {
            None => return a.to_string(),
            Some(why) => log::warn!(
                "ignoring {}: {a:?} is not a runner tag (runner tags cannot {why})",
                path.display()
            ),
        }
    }
    arch_fallback().to_string()
}

/// `uname -m` for the architecture this binary was built for.
fn arch_fallback() -> &'static str {
    match std::env::consts::ARCH {
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "x86" => "i686",
        "arm" => "armv7l",
        other => other,
    }
}

/// This host's os-release `ID`, and its tag: `ID` + the major `VERSION_ID`
/// (up to the first `.`: `rhel9`, `ubuntu24`), or `ID` alone when there is
/// no `VERSION_ID` (a rolling release). `<sysroot>/etc/os-release`, else
/// `<sysroot>/usr/lib/os-release` (os-release(5)); `None` without either,
/// or without an `ID`.
fn os(sysroot: &Path) -> Option<(String, Option<String>)> {
    let (path, text) = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .map(|p| sysroot.join(p))
        .find_map(|p| read_fact(&p).map(|t| (p, t)))
        .or_else(|| {
            log::warn!(
                "--auto-tags os: no {} nor {}: no OS tag",
                sysroot.join("etc/os-release").display(),
                sysroot.join("usr/lib/os-release").display()
            );
            None
        })?;
    let (id, version) = parse_os_release(&text);
    let Some(id) = id.filter(|i| !i.is_empty()) else {
        log::warn!("--auto-tags os: {} has no ID: no OS tag", path.display());
        return None;
    };
    let major = version
        .as_deref()
        .map_or("", |v| v.split('.').next().unwrap_or(""));
    let tag = format!("{id}{major}");
    match tag_problem(&tag) {
        None => Some((id, Some(tag))),
        Some(why) => {
            log::warn!(
                "--auto-tags os: ignoring {}: {tag:?} is not a runner tag (runner tags cannot {why})",
                path.display()
            );
            Some((id, None))
        }
    }
}

/// `ID` and `VERSION_ID` of an os-release file: `KEY=value` lines, the
/// value possibly in single or double quotes (with `\`-escapes in double
/// quotes); comments and other lines ignored.
fn parse_os_release(text: &str) -> (Option<String>, Option<String>) {
    let (mut id, mut version) = (None, None);
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let slot = match key.trim() {
            "ID" => &mut id,
            "VERSION_ID" => &mut version,
            _ => continue,
        };
        *slot = Some(unquote(value.trim()));
    }
    (id, version)
}

/// A shell-style os-release value without its quotes.
fn unquote(v: &str) -> String {
    if let Some(inner) = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        return inner.to_string();
    }
    let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return v.to_string();
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// `gpu` and the vendors of the GPUs this host has: `nvidia` when the
/// NVIDIA driver lists a GPU (`/proc/driver/nvidia/gpus/<bus id>`), `amd`
/// when a node of the AMD kfd topology has compute units (a non-zero
/// `simd_count` in `/sys/class/kfd/kfd/topology/nodes/*/properties`; CPU
/// nodes have 0). Nothing without a GPU.
fn gpus(sysroot: &Path) -> Vec<&'static str> {
    let nvidia = std::fs::read_dir(sysroot.join("proc/driver/nvidia/gpus"))
        .is_ok_and(|mut d| d.next().is_some());
    let amd = std::fs::read_dir(sysroot.join("sys/class/kfd/kfd/topology/nodes"))
        .map(|d| {
            d.take(MAX_ENTRIES).flatten().any(|node| {
                read_fact(&node.path().join("properties"))
                    .is_some_and(|p| simd_count(&p).is_some_and(|n| n > 0))
            })
        })
        .unwrap_or(false);
    let vendors = [(nvidia, "nvidia"), (amd, "amd")];
    if !vendors.iter().any(|(has, _)| *has) {
        return Vec::new();
    }
    let mut tags = vec!["gpu"];
    tags.extend(vendors.iter().filter(|(has, _)| *has).map(|(_, v)| *v));
    tags
}

/// The `simd_count N` line of a kfd topology node's `properties`.
fn simd_count(properties: &str) -> Option<u64> {
    properties.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some("simd_count"))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

/// The tag of `env:NAME`: the variable's value when it is set and not
/// empty (an empty `NAME=` in an `EnvironmentFile` means "none"); a value
/// GitLab would split or reject is a usage error naming the variable.
fn env_tag(name: &str, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Option<String>> {
    let Some(value) = env(name) else {
        log::debug!("--auto-tags env:{name}: {name} is not set: no tag");
        return Ok(None);
    };
    let Some(value) = value.to_str() else {
        return Err(Error::usage(format!(
            "invalid environment variable {name} (--auto-tags env:{name}): not UTF-8"
        )));
    };
    if value.is_empty() {
        log::debug!("--auto-tags env:{name}: {name} is empty: no tag");
        return Ok(None);
    }
    check_tag(
        &format!("environment variable {name} (--auto-tags env:{name})"),
        value,
    )?;
    Ok(Some(value.to_string()))
}

/// A small system file (under /proc, /sys or /etc, which only root
/// writes), read whole up to [`FACT_CAP`]; `None` when it does not exist,
/// or, with a warning, when it cannot be read, is not a regular file (a
/// FIFO never blocks: `O_NONBLOCK`) or is too big. Symlinks are followed:
/// `/etc/os-release` is one.
fn read_fact(path: &Path) -> Option<String> {
    let warn = |why: &dyn std::fmt::Display| {
        log::warn!("--auto-tags: ignoring {}: {why}", path.display());
        None
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return warn(&e),
    };
    match file.metadata() {
        Ok(m) if m.is_file() => {}
        Ok(_) => return warn(&"not a regular file"),
        Err(e) => return warn(&e),
    }
    let mut bytes = Vec::new();
    if let Err(e) = file.take(FACT_CAP + 1).read_to_end(&mut bytes) {
        return warn(&e);
    }
    if bytes.len() as u64 > FACT_CAP {
        return warn(&format_args!("larger than {} KiB", FACT_CAP / 1024));
    }
    match String::from_utf8(bytes) {
        Ok(t) => Some(t),
        Err(_) => warn(&"not UTF-8"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    pub(crate) fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hosts")
            .join(name)
    }

    pub(crate) fn no_env(_: &str) -> Option<OsString> {
        None
    }

    /// A scratch directory, removed when dropped.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let d = std::env::temp_dir().join(format!("gra-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Scratch(d)
        }

        fn write(&self, rel: &str, text: &str) {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn auto_tags_of_the_fixture_hosts() {
        let all = strings(&["arch", "os", "gpu"]);
        let cases = [
            ("nvidia", vec!["x86_64", "rhel9", "gpu", "nvidia"]),
            ("amd", vec!["x86_64", "ubuntu24", "gpu", "amd"]),
            ("cpu", vec!["x86_64", "rhel9"]),
        ];
        for (name, want) in cases {
            let a = AutoTags::detect(&all, &fixture(name), &no_env).unwrap();
            assert_eq!(a.tags, want, "{name}");
        }
        // the list's order, each item once
        let a = AutoTags::detect(
            &strings(&["gpu", "os", "gpu", "arch"]),
            &fixture("nvidia"),
            &no_env,
        )
        .unwrap();
        assert_eq!(a.tags, vec!["gpu", "nvidia", "rhel9", "x86_64"]);
        assert_eq!(
            AutoTags::detect(&[], &fixture("nvidia"), &no_env).unwrap(),
            AutoTags::default()
        );
        // a host with nothing to read: the build's architecture, no other tag
        let empty = Scratch::new("empty-root");
        let a = AutoTags::detect(&all, &empty.0, &no_env).unwrap();
        assert_eq!(a.tags, vec![arch_fallback()]);
        assert_eq!(a.os_id, None);
    }

    #[test]
    fn arch_from_the_kernel_else_the_build() {
        let root = Scratch::new("arch");
        assert_eq!(arch(&root.0), arch_fallback());
        for (text, want) in [
            ("ppc64le\n", "ppc64le"),
            ("aarch64", "aarch64"),
            ("x86_64\n", "x86_64"),
            ("riscv64\n", "riscv64"),
            ("\n", arch_fallback()),
            ("a b\n", arch_fallback()),
        ] {
            root.write("proc/sys/kernel/arch", text);
            assert_eq!(arch(&root.0), want, "{text:?}");
        }
        assert!(ARCHES.contains(&arch_fallback()) || cfg!(not(target_os = "linux")));
    }

    #[test]
    fn os_release_id_and_major_version() {
        let cases = [
            // (os-release, ID, tag)
            (
                "ID=\"rhel\"\nVERSION_ID=\"9.4\"\n",
                Some("rhel"),
                Some("rhel9"),
            ),
            (
                "ID=ubuntu\nVERSION_ID=\"24.04\"\n",
                Some("ubuntu"),
                Some("ubuntu24"),
            ),
            (
                "ID=debian\nVERSION_ID=\"12\"\n",
                Some("debian"),
                Some("debian12"),
            ),
            (
                "ID=\"rocky\"\nVERSION_ID=\"8.9\"\n",
                Some("rocky"),
                Some("rocky8"),
            ),
            (
                "ID='sles'\nVERSION_ID='15.5'\n",
                Some("sles"),
                Some("sles15"),
            ),
            // comments, blanks, other keys, spaces around the line
            (
                "# x\n\n  ID=fedora  \nVERSION=\"40 (Forty)\"\nVERSION_ID=40\n",
                Some("fedora"),
                Some("fedora40"),
            ),
            // a rolling release: no VERSION_ID
            ("ID=arch\nBUILD_ID=rolling\n", Some("arch"), Some("arch")),
            // escapes in double quotes
            ("ID=\"a\\\"b\"\nVERSION_ID=1\n", Some("a\"b"), Some("a\"b1")),
            // not a tag: no tag, but the ID is known
            ("ID=\"my os\"\nVERSION_ID=1\n", Some("my os"), None),
        ];
        let root = Scratch::new("os");
        for (text, id, tag) in cases {
            root.write("etc/os-release", text);
            let got = os(&root.0);
            assert_eq!(got.as_ref().map(|(i, _)| i.as_str()), id, "{text:?}");
            assert_eq!(got.and_then(|(_, t)| t).as_deref(), tag, "{text:?}");
        }
        // no ID: no tag
        root.write("etc/os-release", "NAME=Linux\nVERSION_ID=1\n");
        assert_eq!(os(&root.0), None);
        // /usr/lib/os-release when /etc has none
        std::fs::remove_file(root.0.join("etc/os-release")).unwrap();
        assert_eq!(os(&root.0), None);
        root.write("usr/lib/os-release", "ID=debian\nVERSION_ID=\"13\"\n");
        assert_eq!(
            os(&root.0),
            Some(("debian".into(), Some("debian13".into())))
        );
    }

    #[test]
    fn gpus_by_vendor() {
        assert_eq!(gpus(&fixture("nvidia")), vec!["gpu", "nvidia"]);
        assert_eq!(gpus(&fixture("amd")), vec!["gpu", "amd"]);
        assert!(gpus(&fixture("cpu")).is_empty());
        let root = Scratch::new("gpus");
        // the driver loaded, no GPU; a kfd topology with only CPU nodes
        std::fs::create_dir_all(root.0.join("proc/driver/nvidia/gpus")).unwrap();
        root.write(
            "sys/class/kfd/kfd/topology/nodes/0/properties",
            "cpu_cores_count 8\nsimd_count 0\n",
        );
        assert!(gpus(&root.0).is_empty());
        root.write(
            "sys/class/kfd/kfd/topology/nodes/3/properties",
            "simd_count 440\n",
        );
        root.write("proc/driver/nvidia/gpus/0000:01:00.0/information", "");
        assert_eq!(gpus(&root.0), vec!["gpu", "nvidia", "amd"]);
        for (props, want) in [
            ("simd_count 304\n", Some(304)),
            ("a 1\nsimd_count\t0\n", Some(0)),
            ("simd_counts 3\n", None),
            ("simd_count x\n", None),
            ("", None),
        ] {
            assert_eq!(simd_count(props), want, "{props:?}");
        }
    }

    #[test]
    fn facts_are_read_bounded_and_never_block() {
        let root = Scratch::new("facts");
        let p = root.0.join("f");
        assert_eq!(read_fact(&p), None, "missing");
        std::fs::write(&p, vec![b'a'; FACT_CAP as usize + 1]).unwrap();
        assert_eq!(read_fact(&p), None, "too big");
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        assert_eq!(read_fact(&p), None, "not UTF-8");
        std::fs::write(&p, "x86_64\n").unwrap();
        assert_eq!(read_fact(&p).as_deref(), Some("x86_64\n"));
        std::fs::remove_file(&p).unwrap();
        let st = std::process::Command::new("mkfifo").arg(&p).status();
        if st.is_ok_and(|s| s.success()) {
            assert_eq!(read_fact(&p), None, "a FIFO: refused, not waited on");
        }
        assert_eq!(read_fact(&root.0), None, "a directory");
    }

    #[test]
    fn auto_tag_items_and_env() {
        let e = AutoTags::detect(&strings(&["arch", "cuda"]), Path::new("/"), &no_env).unwrap_err();
        assert_eq!(e.exit_code(), 64);
        assert_eq!(
            e.to_string(),
            r#"invalid --auto-tags item "cuda": expected arch, os, gpu or env:NAME"#
        );
        for bad in ["env:", "env:A=B", "Arch", "env"] {
            let e = AutoTags::detect(&strings(&[bad]), Path::new("/"), &no_env).unwrap_err();
            assert_eq!(e.exit_code(), 64, "{bad}");
        }
        let env = |n: &str| -> Option<OsString> {
            match n {
                "SITE" => Some("llnl".into()),
                "EMPTY" => Some("".into()),
                "BAD" => Some("a b".into()),
                "BIN" => Some(std::os::unix::ffi::OsStringExt::from_vec(vec![0xff])),
                _ => None,
            }
        };
        let a = AutoTags::detect(
            &strings(&["env:SITE", "env:UNSET", "env:EMPTY"]),
            Path::new("/nonexistent"),
            &env,
        )
        .unwrap();
        assert_eq!(a.tags, vec!["llnl"]);
        assert!(!a.could_set("llnl"), "nothing says which values it had");
        let e = AutoTags::detect(&strings(&["env:BAD"]), Path::new("/"), &env).unwrap_err();
        assert_eq!(e.exit_code(), 64);
        assert_eq!(
            e.to_string(),
            r#"invalid environment variable BAD (--auto-tags env:BAD) "a b": runner tags cannot hold whitespace"#
        );
        let e = AutoTags::detect(&strings(&["env:BIN"]), Path::new("/"), &env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid environment variable BIN (--auto-tags env:BIN): not UTF-8"
        );
    }

    #[test]
    fn what_auto_tag_kinds_could_set() {
        let a =
            AutoTags::detect(&strings(&["arch", "os", "gpu"]), &fixture("cpu"), &no_env).unwrap();
        for t in [
            "x86_64", "aarch64", "ppc64le", "rhel9", "rhel8", "rhel10", "gpu", "nvidia", "amd",
        ] {
            assert!(a.could_set(t), "{t}");
        }
        for t in [
            "rhel", "rhel9.4", "rhelx", "rocky8", "RHEL9", "GPU", "intel", "x86", "node12",
        ] {
            assert!(!a.could_set(t), "{t}");
        }
        let only_os = AutoTags::detect(&strings(&["os"]), &fixture("cpu"), &no_env).unwrap();
        assert!(only_os.could_set("rhel8"));
        assert!(!only_os.could_set("gpu") && !only_os.could_set("x86_64"));
        assert!(!AutoTags::default().could_set("gpu"));
    }
}
