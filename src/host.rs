// SPDX-License-Identifier: MIT
//! Facts about this host: hostname, cluster name, batch scheduler, the tags
//! read from the host (`--auto-tags`: architecture, OS, GPUs, environment),
//! the description and tags a runner of a given type is registered with, and
//! which tags GitLab shows that are this host's to repair.

use crate::error::{Error, Result};
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Scheduler commands and the tag each one implies, in lookup order.
const SCHEDULERS: &[(&str, &str)] = &[
    ("sbatch", "slurm"),
    ("salloc", "slurm"),
    ("bsub", "lsf"),
    ("qsub", "pbs"),
    ("cqsub", "cobalt"),
    ("flux", "flux"),
];

/// Where gitlab-runner (through denisbrodbeck/machineid) reads the machine id.
const MACHINE_ID_FILES: &[&str] = &["/var/lib/dbus/machine-id", "/etc/machine-id"];

/// The `system_id` gitlab-runner identifies this host with: the one in its
/// state file beside `config.toml`, else the one it derives on its first
/// start (`s_` + 12 hex digits of HMAC-SHA256 keyed by the machine id over
/// `gitlab-runner`). `None` when gitlab-runner would pick a random one.
pub fn system_id(state_file: &Path) -> Option<String> {
    let text =
        crate::trust::read_text(state_file, crate::trust::Class::Input).unwrap_or_else(|e| {
            log::warn!("ignoring {}: {e}", state_file.display());
            None
        });
    if let Some(text) = text {
        let id = text.trim();
        let valid = id.len() == 14
            && (id.starts_with("s_") || id.starts_with("r_"))
            && id[2..].chars().all(|c| c.is_ascii_alphanumeric());
        if valid {
            return Some(id.to_string());
        }
        log::warn!(
            "ignoring {}: not a gitlab-runner system id",
            state_file.display()
        );
    }
    MACHINE_ID_FILES
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.trim().to_string())
        .find(|t| !t.is_empty())
        .map(|machine_id| derive_system_id(&machine_id))
}

/// gitlab-runner's `system_id` for a machine id.
pub fn derive_system_id(machine_id: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, machine_id.as_bytes());
    let tag = ring::hmac::sign(&key, b"gitlab-runner");
    let hex: String = tag.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("s_{hex}")
}

/// What a runner tag cannot do, if `name` does it (`runner tags cannot …`):
/// GitLab splits `tag_list` on commas and strips whitespace.
pub fn tag_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("be empty")
    } else if name.len() > 255 {
        Some("be longer than 255 bytes")
    } else if name.contains(',') {
        Some("hold a comma")
    } else if name.chars().any(char::is_whitespace) {
        Some("hold whitespace")
    } else if name.chars().any(char::is_control) {
        Some("hold a control character")
    } else {
        None
    }
}

/// A usage error for a `--hostname` or `--tag` GitLab would split or reject;
/// `{:?}` keeps control characters out of the log.
pub fn check_tag(option: &str, value: &str) -> Result<()> {
    match tag_problem(value) {
        Some(why) => Err(Error::usage(format!(
            "invalid {option} {value:?}: runner tags cannot {why}"
        ))),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub hostname: String,
    pub scheduler: Option<&'static str>,
    pub extra_tags: Vec<String>,
    /// Tags from the host (`--auto-tags`); none by default.
    pub auto: AutoTags,
}

impl Host {
    /// `hostname` overrides the kernel's; `path` is the `PATH` searched for
    /// a scheduler.
    pub fn detect(
        hostname: Option<String>,
        path: Option<&str>,
        extra_tags: Vec<String>,
    ) -> Result<Host> {
        let hostname = match hostname {
            Some(h) => {
                check_tag("--hostname", &h)?;
                h
            }
            None => {
                let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map_err(|e| {
                        Error::config(format!("failed to read the hostname: {e}; set --hostname"))
                    })?
                    .trim()
                    .to_string();
                // the machine's, not the command line's: a configuration problem
                if let Some(why) = tag_problem(&h) {
                    return Err(Error::config(format!(
                        "invalid kernel hostname {h:?}: runner tags cannot {why}; set --hostname"
                    )));
                }
                h
            }
        };
        Ok(Host {
            hostname,
            scheduler: path.and_then(find_scheduler),
            extra_tags,
            auto: AutoTags::default(),
        })
    }

    /// The hostname without its digits (`quartz12` → `quartz`).
    pub fn cluster(&self) -> String {
        self.hostname
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .collect()
    }

    pub fn description(&self, runner_type: &str) -> String {
        format!("{}-{}", self.hostname, runner_type)
    }

    /// The ownership rule: a runner in GitLab is this host's runner of type
    /// `ty` exactly when its description is `<hostname>-<ty>` and its tags
    /// hold both the hostname and `ty`, or (a runner the original script
    /// registered) its tag set is exactly the one this host registers for
    /// `ty` ([`Host::registers_exactly`]). Compared exactly, as GitLab
    /// compares tags: the cluster tag never makes another host's runner
    /// ours. The tag set never outweighs a description that names another
    /// host's runner of that type (`login42-shell` whose `login42` tag was
    /// removed; two hosts given the same `--tag`s).
    pub fn owns(&self, description: &str, tags: &[String], ty: &str) -> bool {
        let has = |t: &str| tags.iter().any(|x| x == t);
        let mine = self.description(ty);
        if description == mine {
            return (has(&self.hostname) && has(ty)) || self.registers_exactly(tags, ty);
        }
        let names_another = description
            .strip_suffix(ty)
            .and_then(|d| d.strip_suffix('-'))
            .is_some_and(|h| !h.is_empty());
        !names_another && self.registers_exactly(tags, ty)
    }

    /// Could a runner listed with `description` be this host's by
    /// [`Host::owns`]? Lists show no tags, so only its details can tell;
    /// this says whose details are worth reading: a description `H-…` of
    /// this host, and one that names no host at all (no `-`: what an admin
    /// or the original script may have given a runner of this host's exact
    /// tag set). A description `X-…` of another host is not read: it could
    /// be this host's only by its exact tag set for another type than the
    /// one it names, which no registration makes.
    pub fn could_own(&self, description: &str) -> bool {
        description
            .strip_prefix(&self.hostname)
            .is_some_and(|rest| rest.starts_with('-'))
            || !description.contains('-')
    }

    /// The "exact tag set" half of [`Host::owns`]: `tags` is the set this
    /// host registers for `ty` without `--auto-tags` (hostname, cluster,
    /// type, scheduler, `--tag`s: what the original script registered, and
    /// every runner made before `--auto-tags` was turned on), plus any tags
    /// that this host's auto-tag kinds could have set ([`AutoTags::could_set`]):
    /// those come and go with the hardware and the OS, so a runner made with
    /// yesterday's `rhel8` or a GPU since removed stays this host's. Without
    /// `--auto-tags` this is the exact set, as before; a tag of anything else
    /// (one an admin added by hand) still makes the set not this host's.
    pub fn registers_exactly(&self, tags: &[String], ty: &str) -> bool {
        let base = self.fixed_tags(ty);
        let rest: Vec<String> = tags
            .iter()
            .filter(|t| base.contains(t) || !self.auto.could_set(t))
            .cloned()
            .collect();
        same_set(&rest, &base)
    }

    /// The runner type for which a runner is this host's, by [`Host::owns`],
    /// whether or not that type is configured; `None` for another host's
    /// runner, or when the tags alone would fit more than one type.
    pub fn owned_type(&self, description: &str, tags: &[String]) -> Option<String> {
        if let Some(ty) = description.strip_prefix(&format!("{}-", self.hostname))
            && !ty.is_empty()
            && self.owns(description, tags, ty)
        {
            return Some(ty.to_string());
        }
        let cluster = self.cluster();
        let mut fits = tags
            .iter()
            .filter(|t| **t != self.hostname && **t != cluster && self.owns(description, tags, t));
        match (fits.next(), fits.next()) {
            (Some(t), None) => Some(t.clone()),
            _ => None,
        }
    }

    /// hostname, cluster (when it differs), type, scheduler (batch only),
    /// the tags from the host (`--auto-tags`, in its order), then every
    /// `--tag`; without duplicates.
    pub fn tags(&self, runner_type: &str) -> Vec<String> {
        self.tag_list(runner_type, &self.auto.tags)
    }

    /// [`Host::tags`] without the tags from the host.
    fn fixed_tags(&self, runner_type: &str) -> Vec<String> {
        self.tag_list(runner_type, &[])
    }

    fn tag_list(&self, runner_type: &str, auto: &[String]) -> Vec<String> {
        let mut tags = vec![self.hostname.clone()];
        let cluster = self.cluster();
        let mut push = |t: &str| {
            if !t.is_empty() && !tags.iter().any(|x| x == t) {
                tags.push(t.to_string());
            }
        };
        push(&cluster);
        push(runner_type);
        if runner_type == "batch"
            && let Some(s) = self.scheduler
        {
            push(s);
        }
        for t in auto.iter().chain(&self.extra_tags) {
            push(t);
        }
        tags
    }

    /// The tag list to put on this host's runner of type `ty` that GitLab
    /// shows with `have`, or `None` when its tags need no repair: see
    /// [`repair_tags`]. "Could this host have set it" is: one of
    /// [`Host::tags`] now, or a tag one of the auto-tag kinds asked for
    /// could produce ([`AutoTags::could_set`]).
    pub fn repaired_tags(&self, ty: &str, have: &[String]) -> Option<Vec<String>> {
        repair_tags(have, &self.tags(ty), |t| self.auto.could_set(t))
    }
}

/// The drift rule for tags, pure: given the tags GitLab shows on one of
/// this host's runners (`have`) and the tags this host sets on it now
/// (`want`, [`Host::tags`]), the list to `PUT`, or `None` when nothing needs
/// to change. There is no record of what this host set before, so every tag
/// in `have` is one of three:
///
/// - **wanted** (in `want`): must be there; a missing one is added. This is
///   how a GPU put in later, a new `--tag` or a new OS release reaches a
///   runner made before.
/// - **stale**: not wanted, but this host could have set it earlier
///   (`ours(tag)`: a tag one of its `--auto-tags` kinds could produce — any
///   of `x86_64`/`aarch64`/`ppc64le`, `<os-release ID><digits>` for this
///   host's ID, `gpu`/`nvidia`/`amd`): removed. That is how `gpu`/`nvidia`
///   leave a runner whose card was taken out, and `rhel8` one whose host
///   was upgraded to `rhel9`.
/// - **foreign**: anything else, e.g. a tag an admin added in GitLab by
///   hand: kept, always. So are the values of an old `--tag` or `env:NAME`
///   and a scheduler no longer on `PATH` (nothing says this host set them),
///   and the tags of an auto-tag kind no longer asked for.
///
/// The answer is `want` in its order, then the foreign tags in GitLab's
/// order: deterministic, so the next run finds nothing to do. Compared
/// exactly, as GitLab compares tags (`GPU` is not `gpu`).
pub fn repair_tags(
    have: &[String],
    want: &[String],
    ours: impl Fn(&str) -> bool,
) -> Option<Vec<String>> {
    let missing = want.iter().any(|t| !have.contains(t));
    let stale = have.iter().any(|t| !want.contains(t) && ours(t));
    if !missing && !stale {
        return None;
    }
    let mut tags = want.to_vec();
    for t in have {
        if !ours(t) && !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    Some(tags)
}

/// Do `a` and `b` hold the same tags (order and repeats aside)?
fn same_set(a: &[String], b: &[String]) -> bool {
    a.iter().all(|t| b.contains(t)) && b.iter().all(|t| a.contains(t))
}

fn find_scheduler(path: &str) -> Option<&'static str> {
    SCHEDULERS.iter().find_map(|(cmd, tag)| {
        std::env::split_paths(path)
            .any(|dir| is_executable(&dir.join(cmd)))
            .then_some(*tag)
    })
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What the `arch` item can produce: `uname -m` of the architectures this
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
mod tests {
    use super::*;

    fn host(name: &str, scheduler: Option<&'static str>, extra: &[&str]) -> Host {
        Host {
            hostname: name.into(),
            scheduler,
            extra_tags: extra.iter().map(|s| s.to_string()).collect(),
            auto: AutoTags::default(),
        }
    }

    #[test]
    fn tags_per_type() {
        let cases = [
            (
                host("quartz12", Some("slurm"), &[]),
                "batch",
                vec!["quartz12", "quartz", "batch", "slurm"],
            ),
            (
                host("quartz12", Some("slurm"), &[]),
                "shell",
                vec!["quartz12", "quartz", "shell"],
            ),
            (
                host("login", None, &["x", "login"]),
                "batch",
                vec!["login", "batch", "x"],
            ),
            (host("42", None, &[]), "shell", vec!["42", "shell"]),
        ];
        for (h, ty, want) in cases {
            assert_eq!(h.tags(ty), want);
        }
        assert_eq!(
            host("quartz12", None, &[]).description("shell"),
            "quartz12-shell"
        );
    }

    #[test]
    fn ownership_is_exact() {
        let tags = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let login42 = host("login42", None, &[]);
        let login = host("login", None, &[]);
        let login_tagged = host("login", None, &["login"]);
        let cases = [
            // (host, description, tags, type it is this host's, if any)
            (
                &login42,
                "login42-shell",
                tags(&["login42", "login", "shell"]),
                Some("shell"),
            ),
            // the cluster tag never makes login42's runner login's
            (
                &login,
                "login42-shell",
                tags(&["login42", "login", "shell"]),
                None,
            ),
            (
                &login,
                "login-shell",
                tags(&["login", "shell"]),
                Some("shell"),
            ),
            // a description prefix is not a match: login-gpu's runner
            (
                &login_tagged,
                "login-gpu-shell",
                tags(&["login-gpu", "shell", "login"]),
                None,
            ),
            // description and both tags: extra or missing other tags drifted
            (
                &login42,
                "login42-shell",
                tags(&["login42", "shell", "x"]),
                Some("shell"),
            ),
            // description alone is not enough
            (&login42, "login42-shell", tags(&["login", "shell"]), None),
            // the original script's runners: the exact tag set, any description
            (
                &login42,
                "whatever",
                tags(&["shell", "login", "login42"]),
                Some("shell"),
            ),
            (
                &login42,
                "whatever",
                tags(&["login42", "login", "shell", "x"]),
                None,
            ),
            (&login42, "renamed", tags(&["login42", "oops"]), None),
            // tags are case-sensitive in GitLab
            (
                &login42,
                "login42-shell",
                tags(&["Login42", "login", "shell"]),
                None,
            ),
            // a type not configured is still this host's (for --prune)
            (
                &login42,
                "login42-gpu",
                tags(&["login42", "gpu"]),
                Some("gpu"),
            ),
        ];
        for (h, desc, t, want) in cases {
            assert_eq!(
                h.owned_type(desc, &t).as_deref(),
                want,
                "{} {desc} {t:?}",
                h.hostname
            );
            if let Some(ty) = want {
                assert!(h.owns(desc, &t, ty));
            }
            assert!(!h.owns(desc, &t, "batch") || want == Some("batch"));
        }
        // login42's runner that lost its hostname tag is not login's
        assert_eq!(
            login.owned_type("login42-shell", &tags(&["login", "shell"])),
            None
        );
        // two hosts given the same --tags have the same tag sets
        let a = host("login1", None, &["login1", "login2"]);
        let b_tags = host("login2", None, &["login1", "login2"]).tags("shell");
        assert_eq!(a.owned_type("login2-shell", &b_tags), None);
        assert_eq!(
            a.owned_type("login1-shell", &b_tags).as_deref(),
            Some("shell")
        );
        // tags that fit two types by the exact set are nobody's
        let both = host("n1", None, &["a", "b"]);
        assert_eq!(both.owned_type("x", &tags(&["n1", "n", "a", "b"])), None);
        assert_eq!(
            both.owned_type("n1-a", &tags(&["n1", "n", "a", "b"]))
                .as_deref(),
            Some("a")
        );
    }

    #[test]
    fn tags_gitlab_would_split_or_reject() {
        let long = "a".repeat(256);
        let cases = [
            ("node12", None),
            ("x&tag_list=", None),
            ("a.b-c_d~e", None),
            ("ünïcode", None),
            (&long[1..], None),
            ("", Some("be empty")),
            (&long, Some("be longer than 255 bytes")),
            ("a,b", Some("hold a comma")),
            ("a b", Some("hold whitespace")),
            ("a\tb", Some("hold whitespace")),
            ("a\n", Some("hold whitespace")),
            ("a\u{a0}b", Some("hold whitespace")),
            ("a\u{2028}b", Some("hold whitespace")),
            ("a\u{1b}[31m", Some("hold a control character")),
            ("\0", Some("hold a control character")),
            ("a\u{7f}", Some("hold a control character")),
            ("a\u{85}", Some("hold whitespace")),
            ("a\u{9b}", Some("hold a control character")),
        ];
        for (name, want) in cases {
            assert_eq!(tag_problem(name), want, "{name:?}");
        }
        let e = check_tag("--tag", "a\u{1b}[31mred").unwrap_err();
        assert_eq!(e.exit_code(), 64);
        assert_eq!(
            e.to_string(),
            r#"invalid --tag "a\u{1b}[31mred": runner tags cannot hold a control character"#
        );
        let e = Host::detect(Some("a b".into()), None, Vec::new()).unwrap_err();
        assert_eq!(e.exit_code(), 64, "a given hostname is a usage error");
        assert_eq!(
            e.to_string(),
            r#"invalid --hostname "a b": runner tags cannot hold whitespace"#
        );
    }

    #[test]
    fn system_ids() {
        // HMAC-SHA256(key = machine id, "gitlab-runner"), as gitlab-runner computes it
        assert_eq!(
            derive_system_id("0123456789abcdef0123456789abcdef"),
            "s_ee3af03959fe"
        );
        let dir = std::env::temp_dir().join(format!("gra-sid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(".runner_system_id");
        for (text, want) in [
            ("s_0123456789ab\n", "s_0123456789ab"),
            ("r_ABCDEFabcdef", "r_ABCDEFabcdef"),
        ] {
            std::fs::write(&p, text).unwrap();
            assert_eq!(system_id(&p).as_deref(), Some(want), "{text}");
        }
        for bad in ["x_0123456789ab", "s_0123", "s_0123456789a!"] {
            std::fs::write(&p, bad).unwrap();
            assert_ne!(system_id(&p).as_deref(), Some(bad));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn finds_scheduler_on_path() {
        let dir = std::env::temp_dir().join(format!("gra-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bsub = dir.join("bsub");
        std::fs::write(&bsub, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bsub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("/nonexistent:{}", dir.display());
        assert_eq!(find_scheduler(&path), Some("lsf"));
        std::fs::set_permissions(&bsub, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find_scheduler(&path), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hosts")
            .join(name)
    }

    fn no_env(_: &str) -> Option<OsString> {
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

    /// `host` with `--auto-tags` as on the fixture host `root`.
    fn with_auto(mut h: Host, items: &[&str], root: &str) -> Host {
        h.auto = AutoTags::detect(&strings(items), &fixture(root), &no_env).unwrap();
        h
    }

    #[test]
    fn auto_tags_come_after_the_fixed_ones_and_before_tag() {
        let h = with_auto(
            host("quartz12", Some("slurm"), &["x", "gpu"]),
            &["gpu", "arch", "os"],
            "nvidia",
        );
        assert_eq!(
            h.tags("batch"),
            vec![
                "quartz12", "quartz", "batch", "slurm", "gpu", "nvidia", "x86_64", "rhel9", "x"
            ]
        );
        assert_eq!(
            h.tags("shell"),
            vec![
                "quartz12", "quartz", "shell", "gpu", "nvidia", "x86_64", "rhel9", "x"
            ]
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

    #[test]
    fn drift_repairs_only_the_tags_this_host_sets() {
        let ours = |t: &str| {
            [
                "x86_64", "aarch64", "rhel8", "rhel9", "gpu", "nvidia", "amd",
            ]
            .contains(&t)
        };
        // (what, GitLab has, this host sets, the PUT's tags)
        type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], Option<&'a [&'a str]>);
        let cases: &[Case] = &[
            (
                "in step",
                &["n1", "n", "shell"],
                &["n1", "n", "shell"],
                None,
            ),
            (
                "order aside",
                &["shell", "n1", "n"],
                &["n1", "n", "shell"],
                None,
            ),
            (
                "a hand-added tag is kept, no PUT for it",
                &["n1", "n", "shell", "bigmem"],
                &["n1", "n", "shell"],
                None,
            ),
            (
                "a missing tag is added, the hand-added kept after ours",
                &["bigmem", "n1", "shell"],
                &["n1", "n", "shell"],
                Some(&["n1", "n", "shell", "bigmem"]),
            ),
            (
                "a GPU put in later",
                &["n1", "n", "shell", "x86_64", "rhel9"],
                &["n1", "n", "shell", "x86_64", "rhel9", "gpu", "nvidia"],
                Some(&["n1", "n", "shell", "x86_64", "rhel9", "gpu", "nvidia"]),
            ),
            (
                "the card taken out",
                &["n1", "n", "shell", "x86_64", "gpu", "nvidia", "bigmem"],
                &["n1", "n", "shell", "x86_64"],
                Some(&["n1", "n", "shell", "x86_64", "bigmem"]),
            ),
            (
                "an OS upgrade",
                &["n1", "n", "shell", "rhel8"],
                &["n1", "n", "shell", "rhel9"],
                Some(&["n1", "n", "shell", "rhel9"]),
            ),
            (
                "an old --tag or env: value stays (nothing says it was ours)",
                &["n1", "n", "shell", "old-site"],
                &["n1", "n", "shell", "new-site"],
                Some(&["n1", "n", "shell", "new-site", "old-site"]),
            ),
            (
                "case matters, as in GitLab: GPU is an admin's",
                &["n1", "n", "shell", "GPU"],
                &["n1", "n", "shell"],
                None,
            ),
            (
                "a tag this host sets that the kinds could also set stays",
                &["n1", "n", "shell", "gpu"],
                &["n1", "n", "shell", "gpu"],
                None,
            ),
        ];
        for (what, have, want, put) in cases {
            let got = repair_tags(&strings(have), &strings(want), ours);
            assert_eq!(got, put.map(strings), "{what}");
            // the repaired list needs no further repair
            if let Some(tags) = got {
                assert_eq!(repair_tags(&tags, &strings(want), ours), None, "{what}");
            }
        }
    }

    #[test]
    fn drift_through_the_host() {
        let h = with_auto(host("node12", None, &[]), &["arch", "os", "gpu"], "nvidia");
        let have = strings(&["node12", "node", "shell", "x86_64", "rhel9", "bigmem"]);
        assert_eq!(
            h.repaired_tags("shell", &have),
            Some(strings(&[
                "node12", "node", "shell", "x86_64", "rhel9", "gpu", "nvidia", "bigmem"
            ]))
        );
        let cpu = with_auto(host("node12", None, &[]), &["arch", "os", "gpu"], "cpu");
        let have = strings(&[
            "node12", "node", "shell", "x86_64", "rhel8", "gpu", "nvidia", "bigmem",
        ]);
        assert_eq!(
            cpu.repaired_tags("shell", &have),
            Some(strings(&[
                "node12", "node", "shell", "x86_64", "rhel9", "bigmem"
            ]))
        );
        // without --auto-tags, such tags are an admin's
        let plain = host("node12", None, &[]);
        assert_eq!(plain.repaired_tags("shell", &have), None);
    }

    #[test]
    fn ownership_with_auto_tags() {
        let plain = host("node12", None, &[]);
        let auto = with_auto(host("node12", None, &[]), &["arch", "os", "gpu"], "nvidia");
        let cpu = with_auto(host("node12", None, &[]), &["arch", "os", "gpu"], "cpu");
        // (description, tags, its type for plain, for auto (nvidia), for cpu)
        type Case<'a> = (
            &'a str,
            &'a [&'a str],
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: &[Case] = &[
            // the original script's runner: the exact fixed set
            (
                "x",
                &["node12", "node", "shell"],
                Some("shell"),
                Some("shell"),
                Some("shell"),
            ),
            // made with auto tags, then renamed by hand
            (
                "x",
                &[
                    "node12", "node", "shell", "x86_64", "rhel9", "gpu", "nvidia",
                ],
                None,
                Some("shell"),
                Some("shell"),
            ),
            // made before an upgrade and renamed: yesterday's OS tag
            (
                "x",
                &["node12", "node", "shell", "rhel8"],
                None,
                Some("shell"),
                Some("shell"),
            ),
            // a hand-added tag: the set is not this host's ...
            (
                "x",
                &["node12", "node", "shell", "bigmem"],
                None,
                None,
                None,
            ),
            (
                "x",
                &["node12", "node", "shell", "x86_64", "bigmem"],
                None,
                None,
                None,
            ),
            // ... but description and both tags are
            (
                "node12-shell",
                &["node12", "shell", "x86_64", "gpu", "bigmem"],
                Some("shell"),
                Some("shell"),
                Some("shell"),
            ),
            // auto tags alone never make a runner this host's
            ("x", &["x86_64", "rhel9", "shell"], None, None, None),
            ("x", &["node12", "x86_64", "rhel9", "gpu"], None, None, None),
            // another host's runner stays another's
            (
                "node13-shell",
                &["node12", "node", "shell", "x86_64", "rhel9"],
                None,
                None,
                None,
            ),
            (
                "x",
                &["node13", "node", "shell", "x86_64"],
                None,
                None,
                None,
            ),
        ];
        for (desc, tags, p, a, c) in cases {
            let tags = strings(tags);
            for (h, want, which) in [(&plain, p, "plain"), (&auto, a, "auto"), (&cpu, c, "cpu")] {
                assert_eq!(
                    h.owned_type(desc, &tags).as_deref(),
                    *want,
                    "{which}: {desc} {tags:?}"
                );
                assert_eq!(
                    h.owns(desc, &tags, "shell"),
                    want.is_some(),
                    "{which}: {desc} {tags:?}"
                );
            }
        }
        // what this host registers now is its own, on and off
        for h in [&plain, &auto, &cpu] {
            for ty in ["shell", "batch"] {
                let tags = h.tags(ty);
                assert_eq!(h.owned_type("renamed", &tags).as_deref(), Some(ty));
                assert_eq!(h.owned_type(&h.description(ty), &tags).as_deref(), Some(ty));
            }
        }
    }
}
