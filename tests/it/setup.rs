// SPDX-License-Identifier: MIT
//! `setup`: the air-gapped install from the binary alone, in a scratch
//! `--sysroot` tree and a scratch prefix; `--dry-run`, `--uninstall`, and
//! the refusal where the package installed the drop-in.

use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const DROP_IN: &str = "etc/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf";
const VENDOR: &str = "usr/lib/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf";
const DEBIAN: &str = "etc/default/gitlab-runner-auth";
const RHEL: &str = "etc/sysconfig/gitlab-runner-auth";
const PACKAGED_DROP_IN: &str = include_str!("../../systemd/50-gitlab-runner-auth.conf");
const PACKAGED_SETTINGS: &str = include_str!("../../packaging/gitlab-runner-auth.env");
const PACKAGED_TEMPLATE: &str = include_str!("../../packaging/examples/config.template");

/// A scratch prefix whose `root/` is the sysroot (with `os_release`) and
/// whose `gitlab-runner/` (not created) is the prefix setup is given.
fn node(os_release: &str) -> (Prefix, PathBuf, PathBuf) {
    let p = Prefix::new();
    let root = p.path("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/os-release"), os_release).unwrap();
    let prefix = p.path("gitlab-runner");
    (p, root, prefix)
}

const DEBIAN_OS: &str =
    "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";
const RHEL_OS: &str =
    "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n";

fn setup(p: &Prefix, root: &Path, prefix: &Path, args: &[&str]) -> Run {
    let mut c = command(p);
    c.arg("setup")
        .arg("--sysroot")
        .arg(root)
        .arg("-p")
        .arg(prefix)
        .args(args);
    run_cmd(c)
}

/// The packaged settings file with the lines setup fills in: the API URL
/// when given, and the prefix.
fn settings_with(url: Option<&str>, prefix: &Path) -> String {
    let mut text = PACKAGED_SETTINGS.replace(
        "#GITLAB_RUNNER_AUTH_PREFIX=/etc/gitlab-runner\n",
        &format!("GITLAB_RUNNER_AUTH_PREFIX={}\n", prefix.display()),
    );
    if let Some(u) = url {
        text = text.replace(
            "#GITLAB_RUNNER_AUTH_API_URL=https://gitlab.example.com\n",
            &format!("GITLAB_RUNNER_AUTH_API_URL={u}\n"),
        );
    }
    assert_ne!(text, PACKAGED_SETTINGS);
    text
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every path under `dir`, with its mode and content, to prove nothing changed.
fn tree(dir: &Path) -> Vec<(PathBuf, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            let m = std::fs::symlink_metadata(&path).unwrap();
            if m.is_dir() {
                todo.push(path.clone());
                out.push((path, m.permissions().mode(), Vec::new()));
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, m.permissions().mode(), bytes));
            }
        }
    }
    out.sort();
    out
}

/// A scratch directory under cargo's `target/tmp` (`0755` up to `/`), for
/// a copy of the binary: below `/tmp`, setup refuses any program.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("gra-setup-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        chmod(&dir, 0o755);
        Scratch(dir)
    }

    /// `dir` (made `mode`) holding a copy of the binary (`0755`).
    fn copy_in(&self, dir: &str, mode: u32) -> PathBuf {
        let d = self.0.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        chmod(&d, mode);
        let exe = d.join("gitlab-runner-auth");
        copy_bin(&exe);
        exe
    }
}

/// A copy of the binary at `exe` (`0755`), made by `cp`: a copy written
/// by this process would be open for writing in the children other tests
/// fork meanwhile, and running it would fail with ETXTBSY.
fn copy_bin(exe: &Path) {
    let ok = Command::new("cp")
        .arg(bin())
        .arg(exe)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cp {} {}", bin(), exe.display());
    chmod(exe, 0o755);
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `setup` run by the program at `exe` (argv[0] as given).
fn setup_from(exe: &Path, p: &Prefix, root: &Path, prefix: &Path) -> Run {
    let mut c = std::process::Command::new(exe);
    c.env_clear()
        .env("PATH", p.path("bin"))
        .arg("setup")
        .arg("--sysroot")
        .arg(root)
        .arg("-p")
        .arg(prefix);
    run_cmd(c)
}

/// The refusal of a binary root would run from `exe`, for `why`.
fn program_refused(exe: &Path, why: &str) -> String {
    format!(
        "{0} would run as root at every start of gitlab-runner: refusing {why}; fix it with: install -m 0755 {0} /usr/local/sbin/ and run setup from there",
        exe.display()
    )
}

/// Why a directory of mode `m` others can write is refused above a program.
fn open_dir(dir: &Path, m: u32) -> String {
    format!(
        "{}: it is writable by group or others (mode {m:04o}), so they could replace the program below it (sticky or not: once a tmp cleaner removes it, anyone may put their own there)",
        dir.display()
    )
}

/// Assert `r` is the one-line refusal `line` (exit 77), and nothing changed.
fn assert_refused(r: &Run, line: &str, p: &Prefix, before: &[(PathBuf, u32, Vec<u8>)]) {
    assert_code(r, 77);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{r:?}");
    assert!(lines[0].ends_with(line), "want {line}\n{r:?}");
    assert_eq!(tree(&p.dir), before, "nothing written");
}

#[test]
fn a_binary_in_a_directory_others_can_write_is_refused_sticky_or_not() {
    let s = Scratch::new();
    for (i, m) in [0o1777, 0o0777, 0o0775, 0o1770, 0o0757]
        .into_iter()
        .enumerate()
    {
        let (p, root, prefix) = node(DEBIAN_OS);
        let exe = s.copy_in(&format!("open{i}"), m);
        let before = tree(&p.dir);
        let r = setup_from(&exe, &p, &root, &prefix);
        let why = open_dir(exe.parent().unwrap(), m);
        assert_refused(&r, &program_refused(&exe, &why), &p, &before);
    }
    // the real /tmp (1777) above a private directory
    let (p, root, prefix) = node(DEBIAN_OS);
    let exe = p.path("bin/gitlab-runner-auth");
    copy_bin(&exe);
    let before = tree(&p.dir);
    let r = setup_from(&exe, &p, &root, &prefix);
    let tmp = std::fs::canonicalize(std::env::temp_dir()).unwrap();
    assert_eq!(mode(&tmp), 0o1777, "the tests' /tmp");
    let why = open_dir(&tmp, 0o1777);
    assert_refused(&r, &program_refused(&exe, &why), &p, &before);
}

#[test]
fn a_binary_others_can_write_is_refused() {
    let s = Scratch::new();
    let (p, root, prefix) = node(DEBIAN_OS);
    let exe = s.copy_in("bin", 0o755);
    chmod(&exe, 0o775);
    let before = tree(&p.dir);
    let r = setup_from(&exe, &p, &root, &prefix);
    let why = format!(
        "{}: it is writable by group or others (mode 0775)",
        exe.display()
    );
    assert_refused(&r, &program_refused(&exe, &why), &p, &before);
}

#[test]
fn a_binary_started_through_a_link_in_a_directory_others_can_write_is_refused() {
    let s = Scratch::new();
    let (p, root, prefix) = node(DEBIAN_OS);
    let exe = s.copy_in("safe", 0o755);
    let open = s.0.join("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o1777);
    let link = open.join("gitlab-runner-auth");
    std::os::unix::fs::symlink(&exe, &link).unwrap();
    let before = tree(&p.dir);
    let r = setup_from(&link, &p, &root, &prefix);
    let why = open_dir(&open, 0o1777);
    assert_refused(&r, &program_refused(&exe, &why), &p, &before);
    // started from the safe path, the same binary is accepted
    assert_code(&setup_from(&exe, &p, &root, &prefix), 0);
    assert_eq!(
        read(&root.join(DROP_IN)),
        PACKAGED_DROP_IN.replace(
            "ExecStartPre=/usr/bin/gitlab-runner-auth\n",
            &format!("ExecStartPre={}\n", exe.display())
        )
    );
}

#[test]
fn a_binary_below_a_directory_another_user_can_write_is_refused_and_that_user_could_replace_it() {
    root_only!();
    // (owner, mode) of the parent: the directory of the binary is 0755 root
    for (uid, gid, m) in [(65534, 0, 0o755), (0, 65534, 0o775)] {
        let s = Scratch::new();
        let (p, root, prefix) = node(DEBIAN_OS);
        let exe = s.copy_in("theirs/bin", 0o755);
        let bin_dir = exe.parent().unwrap().to_path_buf();
        let theirs = bin_dir.parent().unwrap().to_path_buf();
        chmod(&theirs, m);
        std::os::unix::fs::chown(&theirs, Some(uid), Some(gid)).unwrap();
        let before = tree(&p.dir);
        let r = setup_from(&exe, &p, &root, &prefix);
        let why = if uid == 65534 {
            format!(
                "{}: it is owned by nobody uid 65534, not by root or the caller",
                theirs.display()
            )
        } else {
            open_dir(&theirs, 0o775)
        };
        assert_refused(&r, &program_refused(&exe, &why), &p, &before);
        // what the refusal prevents: uid 65534 swaps in its own program at
        // the path the drop-in would name
        as_nobody(&format!(
            "mv {0} {0}.old && mkdir {0} && printf '#!/bin/sh\\nid -u\\n' > {1} && chmod 755 {1}",
            bin_dir.display(),
            exe.display()
        ));
        let m = std::fs::metadata(&exe).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            m.uid(),
            65534,
            "the attacker's program is at {}",
            exe.display()
        );
    }
}

#[test]
fn setup_writes_the_drop_in_running_this_binary_the_settings_file_and_the_template() {
    let (p, root, prefix) = node(DEBIAN_OS);
    let r = setup(
        &p,
        &root,
        &prefix,
        &["--api-url", "https://gitlab.site.example/"],
    );
    assert_code(&r, 0);

    let exe = std::fs::canonicalize(bin()).unwrap();
    let drop_in = read(&root.join(DROP_IN));
    let expected = PACKAGED_DROP_IN.replace(
        "ExecStartPre=/usr/bin/gitlab-runner-auth\n",
        &format!("ExecStartPre={}\n", exe.display()),
    );
    assert_ne!(
        expected, PACKAGED_DROP_IN,
        "the packaged ExecStartPre= line"
    );
    assert_eq!(
        drop_in, expected,
        "byte-identical but the ExecStartPre= path"
    );
    assert_eq!(mode(&root.join(DROP_IN)), 0o644);
    assert_eq!(mode(root.join(DROP_IN).parent().unwrap()), 0o755);

    let settings = read(&root.join(DEBIAN));
    assert_eq!(mode(&root.join(DEBIAN)), 0o600, "it may hold HTTPS_PROXY=");
    assert!(
        settings
            .lines()
            .any(|l| l == "GITLAB_RUNNER_AUTH_API_URL=https://gitlab.site.example"),
        "{settings}"
    );
    assert_eq!(
        settings,
        settings_with(Some("https://gitlab.site.example"), &prefix),
        "the packaged file but the API URL and the prefix"
    );
    assert!(!root.join(RHEL).exists());

    assert_eq!(mode(&prefix), 0o700, "a new prefix is private");
    let template = read(&prefix.join("config.template"));
    assert_eq!(
        template,
        PACKAGED_TEMPLATE.replace("https://gitlab.example.com", "https://gitlab.site.example")
    );
    assert_eq!(mode(&prefix.join("config.template")), 0o600);

    // the steps left, and never a restart
    let out = r.output();
    assert!(
        out.contains(&format!("{}", prefix.join("admin-token").display())),
        "{out}"
    );
    assert!(out.contains("gitlab-runner-auth doctor"), "{out}");
    assert!(out.contains("not calling systemctl"), "{out}");
}

#[test]
fn without_an_api_url_the_settings_file_is_the_packaged_one_and_the_step_says_to_set_it() {
    let (p, root, prefix) = node(DEBIAN_OS);
    let r = setup(&p, &root, &prefix, &[]);
    assert_code(&r, 0);
    assert_eq!(read(&root.join(DEBIAN)), settings_with(None, &prefix));
    assert_eq!(read(&prefix.join("config.template")), PACKAGED_TEMPLATE);
    assert!(
        r.stdout.contains(&format!(
            "set GITLAB_RUNNER_AUTH_API_URL in {}",
            root.join(DEBIAN).display()
        )),
        "{r:?}"
    );
}

#[test]
fn a_second_setup_keeps_the_settings_file_and_the_template() {
    let (p, root, prefix) = node(DEBIAN_OS);
    assert_code(&setup(&p, &root, &prefix, &[]), 0);
    let edited_settings = "GITLAB_RUNNER_AUTH_API_URL=https://mine.example\n";
    std::fs::write(root.join(DEBIAN), edited_settings).unwrap();
    std::fs::write(prefix.join("config.template"), "concurrent = 1\n").unwrap();
    let r = setup(&p, &root, &prefix, &["--api-url", "https://other.example"]);
    assert_code(&r, 0);
    assert_eq!(read(&root.join(DEBIAN)), edited_settings);
    assert_eq!(read(&prefix.join("config.template")), "concurrent = 1\n");
    assert!(r.output().contains("is kept"), "{r:?}");
    assert!(root.join(DROP_IN).exists());
}

#[test]
fn dry_run_shows_every_file_and_changes_nothing() {
    let (p, root, prefix) = node(DEBIAN_OS);
    let before = tree(&p.dir);
    let r = setup(
        &p,
        &root,
        &prefix,
        &["--dry-run", "--api-url", "https://gitlab.site.example"],
    );
    assert_code(&r, 0);
    assert_eq!(tree(&p.dir), before, "nothing changed");
    for path in [
        root.join(DROP_IN),
        root.join(DEBIAN),
        prefix.join("config.template"),
    ] {
        assert!(
            r.stdout
                .contains(&format!("# {} (setup would write it", path.display())),
            "{r:?}"
        );
    }
    let exe = std::fs::canonicalize(bin()).unwrap();
    assert!(
        r.stdout
            .contains(&format!("ExecStartPre={}\n", exe.display())),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("GITLAB_RUNNER_AUTH_API_URL=https://gitlab.site.example\n")
    );
    assert!(
        r.stdout.contains("executor = \"shell\""),
        "the template's contents"
    );
}

#[test]
fn uninstall_removes_the_drop_in_and_the_unchanged_settings_file() {
    let (p, root, prefix) = node(DEBIAN_OS);
    assert_code(
        &setup(
            &p,
            &root,
            &prefix,
            &["--api-url", "https://gitlab.site.example"],
        ),
        0,
    );
    let r = setup(&p, &root, &prefix, &["--uninstall"]);
    assert_code(&r, 0);
    assert!(!root.join(DROP_IN).exists(), "{r:?}");
    assert!(!root.join(DEBIAN).exists(), "{r:?}");
    assert!(
        prefix.join("config.template").exists(),
        "the template is the admin's now"
    );
}

#[test]
fn uninstall_keeps_an_edited_settings_file() {
    let (p, root, prefix) = node(DEBIAN_OS);
    assert_code(&setup(&p, &root, &prefix, &[]), 0);
    let edited = PACKAGED_SETTINGS.replace(
        "#GITLAB_RUNNER_AUTH_PRUNE=false",
        "GITLAB_RUNNER_AUTH_PRUNE=true",
    );
    assert_ne!(edited, PACKAGED_SETTINGS);
    std::fs::write(root.join(DEBIAN), &edited).unwrap();
    let r = setup(&p, &root, &prefix, &["--uninstall"]);
    assert_code(&r, 0);
    assert!(!root.join(DROP_IN).exists(), "{r:?}");
    assert_eq!(read(&root.join(DEBIAN)), edited);
    assert!(r.output().contains("was edited"), "{r:?}");
}

#[test]
fn uninstall_from_the_environment_variable() {
    let (p, root, prefix) = node(DEBIAN_OS);
    assert_code(&setup(&p, &root, &prefix, &[]), 0);
    let mut c = command(&p);
    c.arg("setup")
        .arg("--sysroot")
        .arg(&root)
        .arg("-p")
        .arg(&prefix)
        .env("GITLAB_RUNNER_AUTH_UNINSTALL", "1");
    assert_code(&run_cmd(c), 0);
    assert!(!root.join(DROP_IN).exists());
}

#[test]
fn the_packages_drop_in_is_refused_naming_it() {
    let (p, root, prefix) = node(DEBIAN_OS);
    let vendor = root.join(VENDOR);
    std::fs::create_dir_all(vendor.parent().unwrap()).unwrap();
    std::fs::write(&vendor, PACKAGED_DROP_IN).unwrap();
    let before = tree(&p.dir);
    let r = setup(&p, &root, &prefix, &[]);
    assert_code(&r, 78);
    assert!(r.stderr.contains(&vendor.display().to_string()), "{r:?}");
    assert_eq!(tree(&p.dir), before, "nothing written");
    // --uninstall has nothing of setup's to remove there, and changes nothing
    let r = setup(&p, &root, &prefix, &["--uninstall"]);
    assert_code(&r, 0);
    assert_eq!(tree(&p.dir), before, "nothing removed");
}

/// (bytes, mtime) of a file, to prove it was not touched.
fn snapshot(path: &Path) -> (Vec<u8>, std::time::SystemTime) {
    (
        std::fs::read(path).unwrap(),
        std::fs::metadata(path).unwrap().modified().unwrap(),
    )
}

#[test]
fn uninstall_keeps_a_drop_in_setup_did_not_write_naming_it() {
    let (p, root, prefix) = node(DEBIAN_OS);
    assert_code(&setup(&p, &root, &prefix, &[]), 0);
    let drop_in = root.join(DROP_IN);
    let exe = std::fs::canonicalize(bin()).unwrap();
    let ours = format!("ExecStartPre={}\n", exe.display());
    for text in [
        // setup's, edited
        read(&drop_in).replace(
            &ours,
            &format!("{ours}Environment=HTTPS_PROXY=http://proxy:3128\n"),
        ),
        // written by hand
        format!("[Service]\n{ours}"),
        // the package's, with one more line
        format!("{PACKAGED_DROP_IN}ExecStartPost=/bin/true\n"),
    ] {
        std::fs::write(&drop_in, &text).unwrap();
        chmod(&drop_in, 0o644);
        let before = snapshot(&drop_in);
        let r = setup(&p, &root, &prefix, &["--uninstall"]);
        assert_code(&r, 0);
        assert_eq!(snapshot(&drop_in), before, "kept: {r:?}");
        assert!(
            r.stderr.contains(&format!(
                "{} is not the drop-in setup writes (edited, or written by hand): kept (remove it yourself if no longer wanted)\n",
                drop_in.display()
            )),
            "{r:?}"
        );
        assert!(
            r.stderr.contains(&format!("{} is kept", drop_in.display())),
            "{r:?}"
        );
    }
    // what setup writes, for any binary path (the /usr/bin of `make install` too)
    for exe in [
        "/usr/local/sbin/gitlab-runner-auth",
        "/usr/bin/gitlab-runner-auth",
    ] {
        std::fs::write(
            &drop_in,
            PACKAGED_DROP_IN.replace(
                "ExecStartPre=/usr/bin/gitlab-runner-auth\n",
                &format!("ExecStartPre={exe}\n"),
            ),
        )
        .unwrap();
        let r = setup(&p, &root, &prefix, &["--uninstall"]);
        assert_code(&r, 0);
        assert!(!drop_in.exists(), "{exe}: {r:?}");
    }
}

#[test]
fn uninstall_with_the_package_installed_removes_setups_own_drop_in_that_shadows_the_packages() {
    let (p, root, prefix) = node(DEBIAN_OS);
    assert_code(
        &setup(
            &p,
            &root,
            &prefix,
            &["--api-url", "https://gitlab.site.example"],
        ),
        0,
    );
    // then the package came: its drop-in under /usr/lib; the settings file is its now
    let vendor = root.join(VENDOR);
    std::fs::create_dir_all(vendor.parent().unwrap()).unwrap();
    std::fs::write(&vendor, PACKAGED_DROP_IN).unwrap();
    let vendor_before = snapshot(&vendor);
    let settings_before = snapshot(&root.join(DEBIAN));
    let r = setup(&p, &root, &prefix, &["--uninstall"]);
    assert_code(&r, 0);
    assert!(!root.join(DROP_IN).exists(), "the /etc copy is gone: {r:?}");
    assert_eq!(snapshot(&vendor), vendor_before);
    assert_eq!(
        snapshot(&root.join(DEBIAN)),
        settings_before,
        "the package's settings file"
    );
    assert!(
        r.stderr.contains(&format!(
            "{} is kept: the package's drop-in {} reads it",
            root.join(DEBIAN).display(),
            vendor.display()
        )),
        "{r:?}"
    );
    assert!(
        r.stderr.contains(&format!(
            "setup --uninstall: 1 file(s) removed; {} and the prefix are kept; gitlab-runner runs the package's drop-in {} from its next start",
            prefix.join("config.template").display(),
            vendor.display()
        )),
        "{r:?}"
    );
}

#[test]
fn rhel_like_systems_get_etc_sysconfig() {
    for os in [
        RHEL_OS,
        "ID=rhel\nVERSION_ID=9\n",
        "ID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\n",
    ] {
        let (p, root, prefix) = node(os);
        assert_code(&setup(&p, &root, &prefix, &[]), 0);
        assert_eq!(read(&root.join(RHEL)), settings_with(None, &prefix), "{os}");
        assert_eq!(mode(&root.join(RHEL)), 0o600);
        assert!(!root.join(DEBIAN).exists(), "{os}");
    }
    for os in [
        DEBIAN_OS,
        "ID=ubuntu\nID_LIKE=debian\n",
        "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n",
    ] {
        let (p, root, prefix) = node(os);
        assert_code(&setup(&p, &root, &prefix, &[]), 0);
        assert!(root.join(DEBIAN).exists(), "{os}");
        assert!(!root.join(RHEL).exists(), "{os}");
    }
}

#[test]
fn uninstall_is_an_option_of_setup_only() {
    let p = Prefix::new();
    let mut c = command(&p);
    c.args(["plan", "--uninstall"]);
    assert_code(&run_cmd(c), 64);
}

#[test]
fn the_prefix_given_is_written_into_the_settings_file_and_uninstall_still_knows_the_file() {
    let (p, root, prefix) = node(DEBIAN_OS);
    let r = setup(
        &p,
        &root,
        &prefix,
        &["--api-url", "https://gitlab.site.example"],
    );
    assert_code(&r, 0);
    let text = read(&root.join(DEBIAN));
    assert!(
        text.lines()
            .any(|l| l == format!("GITLAB_RUNNER_AUTH_PREFIX={}", prefix.display())),
        "{text}"
    );
    assert_eq!(
        text,
        settings_with(Some("https://gitlab.site.example"), &prefix)
    );
    assert_eq!(mode(&root.join(DEBIAN)), 0o600);
    let r = setup(&p, &root, &prefix, &["--uninstall"]);
    assert_code(&r, 0);
    assert!(!root.join(DEBIAN).exists(), "{r:?}");
}

#[test]
fn a_relative_prefix_is_written_absolute() {
    let (p, root, _) = node(DEBIAN_OS);
    let mut c = command(&p);
    c.current_dir(&p.dir)
        .args(["setup", "--sysroot"])
        .arg(&root)
        .args(["-p", "gitlab-runner"]);
    assert_code(&run_cmd(c), 0);
    assert_eq!(
        read(&root.join(DEBIAN)),
        settings_with(None, &p.path("gitlab-runner"))
    );
    assert!(p.path("gitlab-runner/config.template").exists());
}

#[test]
fn the_default_prefix_is_not_written() {
    let (p, root, _) = node(DEBIAN_OS);
    let r = setup(&p, &root, Path::new("/etc/gitlab-runner"), &["--dry-run"]);
    assert_code(&r, 0);
    assert!(
        r.stdout
            .contains("\n#GITLAB_RUNNER_AUTH_PREFIX=/etc/gitlab-runner\n"),
        "{r:?}"
    );
    assert!(r.stdout.contains("mode 0600)"), "{r:?}");
}

#[test]
fn a_prefix_the_settings_file_cannot_hold_is_refused() {
    let (p, root, _) = node(DEBIAN_OS);
    let bad = p.path("x\nHTTPS_PROXY=evil:3128");
    let before = tree(&p.dir);
    let r = setup(&p, &root, &bad, &[]);
    assert_code(&r, 64);
    let line = format!(
        "invalid --prefix {:?}: setup writes it into the settings file, where whitespace, quotes, \\, ;, $ and % do not stand as they are; use a plain path such as /srv/gitlab-runner",
        bad.display().to_string()
    );
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{r:?}");
    assert!(lines[0].ends_with(&line), "{line}\n{r:?}");
    assert_eq!(tree(&p.dir), before, "nothing written");
}

#[test]
fn a_kept_settings_file_gets_neither_url_nor_prefix_and_setup_says_so() {
    let (p, root, prefix) = node(DEBIAN_OS);
    std::fs::create_dir_all(root.join("etc/default")).unwrap();
    std::fs::write(root.join(DEBIAN), "HTTPS_PROXY=http://proxy:3128\n").unwrap();
    let before = std::fs::metadata(root.join(DEBIAN))
        .unwrap()
        .modified()
        .unwrap();
    let r = setup(
        &p,
        &root,
        &prefix,
        &["--api-url", "https://gitlab.site.example"],
    );
    assert_code(&r, 0);
    assert_eq!(read(&root.join(DEBIAN)), "HTTPS_PROXY=http://proxy:3128\n");
    assert_eq!(
        std::fs::metadata(root.join(DEBIAN))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
    let out = r.output();
    assert!(
        out.contains("set GITLAB_RUNNER_AUTH_API_URL there yourself"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "--prefix {} is not written into it; set GITLAB_RUNNER_AUTH_PREFIX there yourself",
            prefix.display()
        )),
        "{out}"
    );
}

#[test]
fn a_kept_settings_file_another_user_can_write_stops_setup() {
    // root reads it at every start and it names the GitLab the admin token
    // goes to: written by another user, setup installs nothing
    let (p, root, prefix) = node(DEBIAN_OS);
    std::fs::create_dir_all(root.join("etc/default")).unwrap();
    let file = root.join(DEBIAN);
    std::fs::write(&file, "GITLAB_RUNNER_AUTH_API_URL=https://evil.example\n").unwrap();
    chmod(&file, 0o666);
    let before = tree(&p.dir);
    let r = setup(&p, &root, &prefix, &[]);
    assert_code(&r, 77);
    assert!(r.stderr.contains(&path_str(&file)), "{r:?}");
    assert_eq!(before, tree(&p.dir), "nothing written");
    // one only others can read is kept, with a warning
    chmod(&file, 0o644);
    let r = setup(&p, &root, &prefix, &[]);
    assert_code(&r, 0);
    assert!(
        r.output().contains(&format!(
            "{} is readable by others: it may hold proxy credentials (HTTPS_PROXY=); fix it with: chmod 600",
            path_str(&file)
        )),
        "{r:?}"
    );
}

/// A config.toml with one runner registered by hand.
const HAND_REGISTERED: &str = r#"concurrent = 4

[[runners]]
  name = "node12-shell"
  url = "https://gitlab.site.example"
  token = "glrt-handregistered0000"
  executor = "shell"
"#;

/// A node whose prefix holds `config_toml` (`0600`) and no template.
fn hand_registered_node(config_toml: &str) -> (Prefix, PathBuf, PathBuf) {
    let (p, root, prefix) = node(DEBIAN_OS);
    std::fs::create_dir(&prefix).unwrap();
    chmod(&prefix, 0o700);
    std::fs::write(prefix.join("config.toml"), config_toml).unwrap();
    chmod(&prefix.join("config.toml"), 0o600);
    (p, root, prefix)
}

#[test]
fn hand_registered_runners_get_no_example_template_and_setup_says_to_import() {
    let (p, root, prefix) = hand_registered_node(HAND_REGISTERED);
    let config = prefix.join("config.toml");
    let before = snapshot(&config);
    let r = setup(
        &p,
        &root,
        &prefix,
        &["--api-url", "https://gitlab.site.example"],
    );
    assert_code(&r, 0);
    assert!(!prefix.join("config.template").exists(), "{r:?}");
    assert_eq!(snapshot(&config), before, "config.toml untouched");
    assert!(root.join(DROP_IN).exists() && root.join(DEBIAN).exists());
    assert!(
        r.stderr.contains(&format!(
            "{} holds 1 runner(s) and there is no {}: no example template written (the service would register new runners from it and drop these from config.toml); adopt them with gitlab-runner-auth import (or write the example anyway with setup --force)\n",
            config.display(),
            prefix.join("config.template").display()
        )),
        "{r:?}"
    );
    assert!(
        r.stdout.contains(&format!(
            "adopt the 1 runner(s) of {}: gitlab-runner-auth import (writes {} and runner-data.json from it; setup --force writes the example template instead)\n",
            config.display(),
            prefix.join("config.template").display()
        )),
        "{r:?}"
    );
    assert!(!r.stdout.contains("edit "), "{r:?}");
    assert!(
        r.output().contains(
            "setup: 2 file(s) written, 0 kept; config.toml holds 1 runner(s) and no template was written: run gitlab-runner-auth import next"
        ),
        "{r:?}"
    );
}

#[test]
fn hand_registered_runners_with_dry_run_and_with_force() {
    let (p, root, prefix) = hand_registered_node(HAND_REGISTERED);
    let before = tree(&p.dir);
    let r = setup(&p, &root, &prefix, &["--dry-run"]);
    assert_code(&r, 0);
    assert_eq!(tree(&p.dir), before, "nothing changed");
    assert!(
        r.stdout.contains(&format!(
            "# {} is not written: {} holds 1 runner(s); run gitlab-runner-auth import\n",
            prefix.join("config.template").display(),
            prefix.join("config.toml").display()
        )),
        "{r:?}"
    );
    let r = setup(&p, &root, &prefix, &["--force"]);
    assert_code(&r, 0);
    assert_eq!(read(&prefix.join("config.template")), PACKAGED_TEMPLATE);
    assert_eq!(read(&prefix.join("config.toml")), HAND_REGISTERED);
}

#[test]
fn a_config_toml_without_runners_still_gets_the_example_template() {
    let (p, root, prefix) = hand_registered_node("concurrent = 1\n");
    assert_code(&setup(&p, &root, &prefix, &[]), 0);
    assert_eq!(read(&prefix.join("config.template")), PACKAGED_TEMPLATE);
}

#[test]
fn a_config_toml_that_does_not_parse_is_named_and_nothing_is_written() {
    let (p, root, prefix) = hand_registered_node("[[runners]\n");
    let before = tree(&p.dir);
    let r = setup(&p, &root, &prefix, &[]);
    assert_code(&r, 65);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{r:?}");
    assert!(
        lines[0].contains(&format!(
            "failed to parse {}: line 1, column ",
            prefix.join("config.toml").display()
        )),
        "{r:?}"
    );
    assert_eq!(tree(&p.dir), before, "nothing written");
}
