// SPDX-License-Identifier: MIT
//! Local trust: another local user (uid 65534, through `setpriv`) tries to
//! turn root's run against its users through the prefix, the template, the
//! state, the lock or the directory of `config.toml`; and files swapped for
//! FIFOs, symlinks or huge files. Every refusal is exit 77 (65 for a huge
//! file) before any request, names the path and the fix, and leaves every
//! file as it was.

use crate::support::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Run `script` with `sh -c` as uid/gid 65534 without supplementary groups.
fn as_nobody(script: &str) {
    let st = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .status()
        .expect("setpriv");
    assert!(st.success(), "attacker script failed: {script}");
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mkfifo(p: &Path) {
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
}

/// Refused with 77 before any request, naming `path` and `fix`.
fn assert_refused(r: &Run, gl: &FakeGitlab, path: &Path, fix: &str) {
    assert_code(r, 77);
    let shown = path_str(path);
    assert!(
        r.stderr.contains(&format!("refusing {shown}: ")),
        "names {shown}: {r:?}"
    );
    assert!(
        r.stderr.contains(&format!("fix it with: {fix}")),
        "fix '{fix}': {r:?}"
    );
    assert!(gl.world().requests.is_empty(), "{:?}", gl.world().lines());
    assert_no_secrets(r, gl);
}

macro_rules! root_only {
    () => {
        if !is_root() {
            eprintln!("skipped: not root, so no other uid can play the attacker");
            return;
        }
    };
}

#[test]
fn a_world_writable_prefix_is_refused_whatever_the_attacker_planted() {
    root_only!();
    let gl = FakeGitlab::start(World::default());
    type Plant = fn(&Prefix);
    let attacks: [(&str, Plant); 5] = [
        ("nothing yet", |_| {}),
        (
            "a config.toml of their own, to read the tokens later",
            |p| {
                as_nobody(&format!(
                    "echo 'concurrent = 1' > {0}/config.toml && chmod 666 {0}/config.toml",
                    p.dir.display()
                ))
            },
        ),
        ("a runner-data.json naming another team's runner", |p| {
            as_nobody(&format!(
                "echo '{{\"shell\": {{\"id\": 77, \"token\": \"x\"}}, \"batch\": {{}}}}' > {}/runner-data.json",
                p.dir.display()
            ))
        }),
        ("the lock as a symlink to a file root would create", |p| {
            as_nobody(&format!(
                "ln -s {0}/../planted-by-nobody {0}/.gitlab-runner-auth.lock",
                p.dir.display()
            ))
        }),
        ("the lock as a FIFO", |p| {
            as_nobody(&format!(
                "mkfifo {}/.gitlab-runner-auth.lock",
                p.dir.display()
            ))
        }),
    ];
    for (what, plant) in attacks {
        let p = Prefix::standard(REGISTRATION_TOKEN);
        chmod(&p.dir, 0o777);
        plant(&p);
        let before = p.files();
        let r = run(&p, &gl, &[]);
        assert_refused(&r, &gl, &p.dir, &format!("chmod go-w {}", path_str(&p.dir)));
        assert!(
            r.stderr.contains("writable by group or others (mode 0777)"),
            "{what}: {r:?}"
        );
        assert_eq!(p.files(), before, "{what}: nothing created or removed");
        assert!(!p.dir.join("../planted-by-nobody").exists(), "{what}");
        // plan and status refuse as well
        for cmd in ["plan", "status"] {
            assert_code(&run(&p, &gl, &[cmd]), 77);
        }
        assert!(gl.world().requests.is_empty());
    }
}

#[test]
fn a_template_another_user_can_write_is_refused() {
    root_only!();
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    chmod(&p.dir, 0o755);
    chmod(&p.path("config.template"), 0o666);
    as_nobody(&format!(
        "t=$(sed 's|http://127.0.0.1|https://evil.example.net/|' {0}) && printf '%s\\n' \"$t\" > {0}",
        p.path("config.template").display()
    ));
    assert!(p.read("config.template").contains("evil.example.net"));
    let r = run(&p, &gl, &[]);
    let t = p.path("config.template");
    assert_refused(&r, &gl, &t, &format!("chmod go-w {}", path_str(&t)));
    assert!(!p.exists("config.toml") && !p.exists("runner-data.json"));
    // a template the other user owns, even 0644, is refused too
    std::fs::remove_file(&t).unwrap();
    std::fs::write(&t, TEMPLATE).unwrap();
    std::os::unix::fs::chown(&t, Some(65534), Some(65534)).unwrap();
    chmod(&t, 0o644);
    let r = run(&p, &gl, &[]);
    assert_refused(&r, &gl, &t, &format!("chown root {}", path_str(&t)));
    assert!(r.stderr.contains("uid 65534, not by root"), "{r:?}");
}

#[test]
fn state_ca_file_and_config_toml_follow_the_same_rules() {
    root_only!();
    let gl = FakeGitlab::start(World::default());
    let cases: [(&str, &[&str]); 3] = [
        ("runner-data.json", &[]),
        ("site-ca.pem", &["--ca-file"]),
        ("config.toml", &[]),
    ];
    for (name, flag) in cases {
        let p = Prefix::standard(REGISTRATION_TOKEN);
        let text = match name {
            "runner-data.json" => r#"{"shell": {}, "batch": {}}"#,
            "config.toml" => "concurrent = 1\n",
            _ => "-----BEGIN CERTIFICATE-----\n",
        };
        let path = p.path(name);
        let mut args: Vec<String> = flag.iter().map(|s| s.to_string()).collect();
        if !flag.is_empty() {
            args.push(path_str(&path));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // group-writable
        p.write_mode(name, text, 0o664);
        let r = run(&p, &gl, &args);
        assert_refused(&r, &gl, &path, &format!("chmod go-w {}", path_str(&path)));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "{name} untouched"
        );
        // owned by another user
        chmod(&path, 0o644);
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let r = run(&p, &gl, &args);
        assert_refused(&r, &gl, &path, &format!("chown root {}", path_str(&path)));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "{name} untouched"
        );
    }
}

#[test]
fn the_directory_of_config_toml_and_every_parent_are_checked() {
    root_only!();
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    // --config in a directory another user can write: they could swap the file
    let open = p.path("shared");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let config = open.join("config.toml");
    let r = run(&p, &gl, &["--config", &path_str(&config)]);
    assert_refused(&r, &gl, &open, &format!("chmod go-w {}", path_str(&open)));
    // sticky does not excuse the directory itself
    chmod(&open, 0o1777);
    assert_code(&run(&p, &gl, &["--config", &path_str(&config)]), 77);
    // ... but a sticky parent (like /tmp) is fine
    let inner = open.join("etc");
    std::fs::create_dir(&inner).unwrap();
    chmod(&inner, 0o755);
    let config = inner.join("config.toml");
    assert_code(&run(&p, &gl, &["--config", &path_str(&config)]), 0);
    assert!(config.is_file());
    // a non-sticky world-writable parent is not
    chmod(&open, 0o777);
    gl.world().requests.clear();
    let r = run(&p, &gl, &["--config", &path_str(&config)]);
    assert_refused(&r, &gl, &open, &format!("chmod go-w {}", path_str(&open)));
    assert!(r.stderr.contains("without the sticky bit"), "{r:?}");
    // a parent owned by another user
    chmod(&open, 0o755);
    std::os::unix::fs::chown(&open, Some(65534), None).unwrap();
    let r = run(&p, &gl, &["--config", &path_str(&config)]);
    assert_refused(&r, &gl, &open, &format!("chown root {}", path_str(&open)));
    // the prefix reached through a symlink that sits in a writable directory
    std::os::unix::fs::chown(&open, Some(0), None).unwrap();
    chmod(&open, 0o777);
    let link = open.join("prefix-link");
    std::os::unix::fs::symlink(&p.dir, &link).unwrap();
    let mut c = command(&p);
    c.args(["--api-url", &gl.url(), "--prefix"])
        .arg(&link)
        .args(["--hostname", HOST]);
    let r = run_cmd(c);
    assert_code(&r, 77);
    assert!(gl.world().requests.is_empty());
}

#[test]
fn fifos_symlinks_and_huge_files_are_refused_without_hanging() {
    let gl = FakeGitlab::start(World::default());
    type Swap = fn(&Path);
    let swaps: [(&str, Swap, &str); 3] = [
        ("a FIFO", mkfifo, "not a regular file (a FIFO)"),
        (
            "a symlink to /dev/zero",
            |p| std::os::unix::fs::symlink("/dev/zero", p).unwrap(),
            "it is a symbolic link",
        ),
        (
            "a 2 MiB file",
            |p| {
                std::fs::write(p, vec![b'a'; 2 << 20]).unwrap();
                chmod(p, 0o600);
            },
            "larger than 1024 KiB",
        ),
    ];
    for name in [
        "admin-token",
        "access-token",
        "config.template",
        "runner-data.json",
        "config.toml",
        ".gitlab-runner-auth.lock",
    ] {
        for (what, swap, says) in swaps {
            if name == ".gitlab-runner-auth.lock" && what == "a 2 MiB file" {
                continue; // the lock is never read
            }
            let p = Prefix::standard(REGISTRATION_TOKEN);
            let path = p.path(name);
            let _ = std::fs::remove_file(&path);
            swap(&path);
            let t0 = std::time::Instant::now();
            let r = run(&p, &gl, &["--wait", "30s"]);
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(20),
                "{name} as {what} hung"
            );
            let want = if what == "a 2 MiB file" { 65 } else { 77 };
            assert_code(&r, want);
            assert!(r.stderr.contains(says), "{name} as {what}: {r:?}");
            assert!(r.stderr.contains(&path_str(&path)), "{name}: {r:?}");
            assert!(gl.world().requests.is_empty(), "{name} as {what}");
            assert!(
                name == "runner-data.json" || !p.exists("runner-data.json"),
                "{name} as {what}"
            );
        }
    }
}

#[test]
fn the_lock_symlink_creates_nothing_elsewhere() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let target = p.path("elsewhere");
    std::os::unix::fs::symlink(&target, p.path(".gitlab-runner-auth.lock")).unwrap();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 77);
    assert!(!target.exists(), "the symlink was followed");
    assert!(gl.world().requests.is_empty());
}
