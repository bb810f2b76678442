// SPDX-License-Identifier: MIT
//! Local trust: another local user (uid 65534, through `setpriv`) tries to
//! turn root's run against its users through the prefix (a symlink chain
//! through a directory they can write, retargeted mid-run), the template,
//! the state, the lock or the directory of `config.toml`; and files swapped
//! for FIFOs, symlinks or huge files. Every refusal is exit 77 (65 for a huge
//! file) before any request, names the path and the fix, and leaves every
//! file as it was.
//!
//! Also the token files (modes, owner, `$CREDENTIALS_DIRECTORY`, missing or
//! empty ones), a run as the gitlab-runner user, and secrets never shown
//! (trace logs, GitLab errors that echo a token, junk answers, a broken
//! `config.toml`, a template error quoting a literal secret); a state
//! every user can read is fixed or warned about.

use crate::support::*;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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

/// In scratch directory `t` (made 0755): `a -> m/n -> x`, with `m`
/// world-writable (no sticky bit) and the real prefix `x/p` (root, 0700).
/// Returns the prefix as the admin passes it (`a/p`) and the real one.
/// Whoever can write `m` can retarget `n`, and so the whole prefix.
fn chained_prefix(t: &Prefix, admin: &str) -> (PathBuf, PathBuf) {
    let base = &t.dir;
    chmod(base, 0o755);
    for d in ["x", "m"] {
        std::fs::create_dir(base.join(d)).unwrap();
    }
    chmod(&base.join("x"), 0o755);
    chmod(&base.join("m"), 0o777);
    let real = base.join("x/p");
    std::fs::create_dir(&real).unwrap();
    chmod(&real, 0o700);
    symlink(base.join("x"), base.join("m/n")).unwrap();
    symlink(base.join("m/n"), base.join("a")).unwrap();
    for (f, text, mode) in [
        ("admin-token", admin, 0o600),
        ("access-token", admin, 0o600),
        ("config.template", TEMPLATE, 0o644),
    ] {
        std::fs::write(real.join(f), text).unwrap();
        chmod(&real.join(f), mode);
    }
    (base.join("a/p"), real)
}

/// The tool in `prefix`, a path rather than a [`Prefix`] (`PATH` empty).
fn run_prefix(prefix: &Path, gl: &FakeGitlab, host: &str, args: &[&str]) -> Run {
    let mut c = Command::new(bin());
    c.env_clear()
        .env("PATH", "/nonexistent")
        .args(["--api-url", &gl.url(), "--prefix"])
        .arg(prefix)
        .args(["--hostname", host, "--timeout", "5s", "--wait", "5s"])
        .args(args);
    run_cmd(c)
}

/// A prefix whose path resolves through a symlink that sits in a
/// world-writable directory must not pass StrictModes: the directories
/// holding the intermediate symlinks of a chain are checked, not only the
/// ancestors of the path as given and of its canonical form.
#[test]
fn a_prefix_reached_through_a_symlink_in_a_world_writable_directory_is_refused() {
    root_only!();
    let gl = FakeGitlab::start(World::default());
    let t = Prefix::new();
    let (prefix, _real) = chained_prefix(&t, ADMIN_PAT);
    let r = run_prefix(&prefix, &gl, "node12", &[]);
    assert_code(&r, 77);
    assert!(gl.world().requests.is_empty(), "{:?}", gl.world().lines());
}

/// The same layout, retargeted by another user while the run waits on
/// GitLab: the attacker must never get a file, owned by them, holding
/// runner tokens (the state's trust error swallowed on save, and the new
/// file fchowned to the owner of whatever sits at the path, once did
/// that).
#[test]
fn a_prefix_redirected_mid_run_never_hands_tokens_to_another_user() {
    root_only!();
    let gl = FakeGitlab::start(World::default());
    gl.world().fault(
        Some("POST"),
        "/user/runners",
        FaultKind::Delay(Duration::from_millis(1500)),
        2,
    );
    let t = Prefix::new();
    let (prefix, _real) = chained_prefix(&t, ADMIN_PAT);
    let base = t.dir.clone();
    let evil = base.join("m/evil");
    let attacker = std::thread::spawn({
        let base = base.clone();
        move || {
            as_nobody(&format!(
                "mkdir -p {b}/m/evil/p && cd {b}/m/evil/p && touch runner-data.json config.toml && chmod 600 *",
                b = base.display()
            ));
            std::thread::sleep(Duration::from_millis(700));
            as_nobody(&format!(
                "ln -s {b}/m/evil {b}/m/n.new && mv -T {b}/m/n.new {b}/m/n",
                b = base.display()
            ));
        }
    });
    let r = run_prefix(&prefix, &gl, "node12", &[]);
    attacker.join().unwrap();
    let issued = gl.world().issued.clone();
    for f in ["runner-data.json", "config.toml"] {
        let p = evil.join("p").join(f);
        let m = std::fs::metadata(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let leaked: Vec<&String> = issued.iter().filter(|t| text.contains(*t)).collect();
        assert!(
            m.uid() != 65534 || leaked.is_empty(),
            "{} is owned by uid 65534 and holds runner tokens {leaked:?}\n{r:?}",
            p.display()
        );
    }
}

/// A template error quotes the field text, which may be a literal secret
/// (JSON in a template with undoubled braces): the secret is never shown.
#[test]
fn a_template_error_never_quotes_a_literal_secret() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(ADMIN_PAT);
    let secret = "glpat-LiteralSecretInTemplate0123";
    p.write(
        "config.template",
        &TEMPLATE.replace(
            "executor = \"shell\"\n\n",
            &format!(
                "executor = \"shell\"\n  environment = ['CFG={{\"api_token\": \"{secret}\"}}']\n\n"
            ),
        ),
    );
    let r = run(&p, &gl, &[]);
    assert_ne!(r.code, 0);
    assert!(!r.output().contains(&secret[6..]), "{r:?}");
}

/// A runner-data.json (tokens) that every local user can read, as the
/// original script left it, is not accepted and kept so silently: fixed,
/// or at least warned about.
#[test]
fn a_world_readable_state_is_fixed_or_at_least_warned_about() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(ADMIN_PAT);
    assert_code(&run(&p, &gl, &[]), 0);
    chmod(&p.path("runner-data.json"), 0o644);
    chmod(&p.path("config.toml"), 0o644);
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    let fixed = p.mode("runner-data.json") & 0o077 == 0 && p.mode("config.toml") & 0o077 == 0;
    assert!(
        fixed || r.stderr.contains("readable"),
        "modes {:o} {:o}: {r:?}",
        p.mode("runner-data.json"),
        p.mode("config.toml")
    );
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

#[test]
fn insecure_token_files_are_refused_before_any_request() {
    let gl = FakeGitlab::start(World::default());
    for (name, mode) in [("admin-token", 0o640), ("access-token", 0o604)] {
        let p = Prefix::standard(REGISTRATION_TOKEN);
        p.write_mode(name, ADMIN_PAT, mode);
        let r = run(&p, &gl, &[]);
        assert_code(&r, 77);
        let path = path_str(&p.path(name));
        assert!(
            r.stderr.contains(&format!("fix it with: chmod 600 {path}")),
            "{r:?}"
        );
        assert!(gl.world().requests.is_empty());
        assert!(!p.exists("config.toml") && !p.exists("runner-data.json"));
        assert_no_secrets(&r, &gl);
    }
}

#[test]
fn token_file_owned_by_another_user_is_refused() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    std::os::unix::fs::chown(p.path("admin-token"), Some(4242), None).unwrap();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 77);
    assert!(r.stderr.contains("owned by uid 4242, not by root"), "{r:?}");
    assert!(r.stderr.contains("chown root"), "{r:?}");
    assert!(gl.world().requests.is_empty());
}

#[test]
fn credentials_directory_comes_first() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard("wrong-token-in-prefix");
    let creds = Prefix::new();
    creds.write("admin-token", REGISTRATION_TOKEN);
    let mut c = command(&p);
    c.env("CREDENTIALS_DIRECTORY", &creds.dir)
        .args(["--api-url", &gl.url(), "--prefix"])
        .arg(&p.dir)
        .args(["--hostname", HOST]);
    let r = run_cmd(c);
    assert_code(&r, 0);
    assert!(
        gl.world()
            .requests
            .iter()
            .all(|q| q.param("token").unwrap() == REGISTRATION_TOKEN)
    );
}

#[test]
fn trace_logging_never_shows_a_token() {
    let mut world = World::default();
    world.registration_enabled = false;
    let gl = FakeGitlab::start(world);
    let p = Prefix::standard(ADMIN_PAT);
    p.write("access-token", ADMIN_PAT);
    let r = run(&p, &gl, &["-vv"]);
    assert_code(&r, 0);
    assert!(r.stderr.contains("DEBUG"), "{r:?}");
    assert!(
        r.stderr
            .contains("TRACE [gitlab] POST /user/runners <- 201 {"),
        "{r:?}"
    );
    gl.world().rotate(p.state_id("shell"));
    let r2 = run(&p, &gl, &["-vv", "plan"]);
    assert_code(&r2, 2);
    assert_no_secrets(&r, &gl);
    assert_no_secrets(&r2, &gl);
}

#[test]
fn a_group_writable_prefix_or_a_missing_one_is_refused() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    std::fs::set_permissions(&p.dir, std::os::unix::fs::PermissionsExt::from_mode(0o770)).unwrap();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 77);
    assert!(
        r.stderr.contains(&format!(
            "refusing {0}: it is writable by group or others (mode 0770), who could then change this host's runners; fix it with: chmod go-w {0}",
            path_str(&p.dir)
        )),
        "{r:?}"
    );
    assert!(gl.world().requests.is_empty());
    let mut c = command(&p);
    c.args(["--api-url", &gl.url(), "--prefix", "/nonexistent/prefix"]);
    let r = run_cmd(c);
    assert_code(&r, 78);
    assert!(
        r.stderr
            .contains("prefix /nonexistent/prefix is not a directory"),
        "{r:?}"
    );
}

#[test]
fn missing_or_empty_token_files_are_clear_errors() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    std::fs::remove_file(p.path("admin-token")).unwrap();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 78);
    assert!(
        r.stderr.contains(&format!(
            "cannot create the batch runner: no admin-token in {}",
            path_str(&p.dir)
        )),
        "{r:?}"
    );
    assert!(gl.world().requests.is_empty());
    p.write("admin-token", "  \n");
    let r = run(&p, &gl, &[]);
    assert_code(&r, 78);
    assert!(
        r.stderr.contains(&format!(
            "token file {} is empty",
            path_str(&p.path("admin-token"))
        )),
        "{r:?}"
    );
    assert!(!p.exists("config.toml") && !p.exists("runner-data.json"));
}

#[test]
fn a_broken_config_toml_is_replaced_without_echoing_its_tokens() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let token = p.state_token("shell");
    // an unterminated string on the token's line
    let broken = p
        .read("config.toml")
        .replace(&format!("\"{token}\""), &format!("\"{token}"));
    p.write("config.toml", &broken);
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert!(r.stderr.contains("failed to parse"), "{r:?}");
    assert!(r.stderr.contains("it will be replaced"), "{r:?}");
    assert!(p.read("config.toml").contains(&format!("\"{token}\"")));
    assert_no_secrets(&r, &gl);
}

#[test]
fn junk_json_values_are_not_echoed() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let junk = "{\"id\": \"glrt-NotAnIdButATokenValue1234\", \"token\": 5}";
    answer_next_create(&gl, junk);
    let r = run(&p, &gl, &[]);
    assert_code(&r, 65);
    assert!(
        r.stderr
            .contains("POST /runners: 201 with an unreadable body"),
        "{r:?}"
    );
    assert!(
        r.stderr
            .contains("JSON of an unexpected shape at line 1 column"),
        "{r:?}"
    );
    assert!(
        r.stderr
            .contains("GitLab may have created a runner whose token this host never got"),
        "{r:?}"
    );
    assert!(!r.stderr.contains("NotAnIdButATokenValue"), "{r:?}");
    assert!(!p.exists("config.toml"));
}

#[test]
fn runs_as_the_gitlab_runner_user_with_its_own_files() {
    use std::os::unix::process::CommandExt;
    if !std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        eprintln!("not root: cannot switch to another user");
        return;
    }
    const USER: u32 = 4321;
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    for f in [".", "admin-token", "config.template"] {
        std::os::unix::fs::chown(p.path(f), Some(USER), Some(USER)).unwrap();
    }
    let as_user = |args: &[&str]| {
        let mut c = command(&p);
        c.uid(USER).gid(USER);
        c.args(["--api-url", &gl.url(), "--prefix"])
            .arg(&p.dir)
            .args(["--hostname", HOST])
            .args(args);
        run_cmd(c)
    };
    let r = as_user(&[]);
    assert_code(&r, 0);
    for f in [
        "config.toml",
        "runner-data.json",
        ".gitlab-runner-auth.lock",
    ] {
        let m = std::fs::metadata(p.path(f)).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o777), (USER, 0o600), "{f}");
    }
    // a root-owned token file the user cannot read is a clear refusal
    p.write("access-token", ADMIN_PAT);
    let r = as_user(&[]);
    assert_code(&r, 77);
    assert!(
        r.stderr.contains(&format!(
            "failed to read {}: Permission denied",
            path_str(&p.path("access-token"))
        )),
        "{r:?}"
    );
}

/// A JSON error body (GitLab's, or a proxy's) with this message.
fn echo(status: u16, message: &str) -> FaultKind {
    FaultKind::Raw {
        status,
        content_type: "application/json".into(),
        body: serde_json::json!({ "message": message }).to_string(),
    }
}

#[test]
fn a_gitlab_error_echoing_the_registration_token_is_masked() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    gl.world().fault(
        Some("POST"),
        "/runners",
        echo(
            400,
            &format!("bad request: token={REGISTRATION_TOKEN} PRIVATE-TOKEN={ADMIN_PAT}"),
        ),
        1,
    );
    let r = run(&p, &gl, &["-vv"]);
    assert_code(&r, 78);
    assert!(
        r.stderr.contains(
            "POST /runners: 400 bad request: token=GR1348941…tK8a PRIVATE-TOKEN=glpat-…6789"
        ),
        "{r:?}"
    );
    assert_no_secrets(&r, &gl);

    // without a known prefix or a key: only knowing what was sent masks it
    let p = Prefix::standard("OldRegistrationToken0123");
    gl.world().instance_registration_token = "OldRegistrationToken0123".into();
    gl.world().fault(
        Some("POST"),
        "/runners",
        echo(
            400,
            "400 Bad request - OldRegistrationToken0123 (from body)",
        ),
        1,
    );
    let r = run(&p, &gl, &["-vv"]);
    assert_code(&r, 78);
    assert!(
        r.stderr
            .contains("POST /runners: 400 Bad request - …0123 (from body)"),
        "{r:?}"
    );
    assert_no_secrets(&r, &gl);
}

#[test]
fn a_gitlab_error_echoing_the_access_token_is_masked() {
    // an access token from before GitLab 14.5: no glpat- prefix
    const OLD_PAT: &str = "OldAccessToken0123456789";
    let mut world = World::default();
    let admin = world.pats[ADMIN_PAT].clone();
    world.pats.insert(OLD_PAT.into(), admin);
    let gl = FakeGitlab::start(world);
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write("access-token", OLD_PAT);
    assert_code(&run(&p, &gl, &[]), 0);
    let id = p.state_id("shell");
    gl.world().rotate(id);
    // the heal: POST /runners/:id/reset_authentication_token with the access token
    gl.world().fault(
        Some("POST"),
        &format!("/runners/{id}/reset_authentication_token"),
        echo(400, &format!("400 Bad request - {OLD_PAT} {ADMIN_PAT}")),
        1,
    );
    let r = run(&p, &gl, &["-vv"]);
    assert_code(&r, 78);
    assert!(
        r.stderr.contains(&format!(
            "POST /runners/{id}/reset_authentication_token: 400 Bad request - …6789 glpat-…6789"
        )),
        "{r:?}"
    );
    assert_no_secrets(&r, &gl);

    // stateless: GET /runners/all
    let p = Prefix::standard(ADMIN_PAT);
    p.write("access-token", OLD_PAT);
    gl.world()
        .fault(Some("GET"), "/runners/all", echo(400, OLD_PAT), 1);
    let r = run(&p, &gl, &["--stateless", "-vv"]);
    assert_code(&r, 78);
    assert!(r.stderr.contains("GET /runners/all"), "{r:?}");
    assert_no_secrets(&r, &gl);
}

#[test]
fn a_retried_gitlab_error_echoing_the_runner_token_is_masked() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    // one runner, so the fault surely hits the request whose token it echoes
    p.write("runner-data.json", "{\"shell\": {}}");
    p.write(
        "config.template",
        "[[runners]]\n  name = \"{hostname}-shell\"\n  token = \"{shell}\"\n",
    );
    assert_code(&run(&p, &gl, &[]), 0);
    let token = p.state_token("shell");
    assert!(!token.starts_with("gl"), "a token without a known prefix");
    gl.world().requests.clear();
    gl.world().fault(
        Some("POST"),
        "/runners/verify",
        echo(502, &format!("502 Bad Gateway: upstream got {token}")),
        1,
    );
    let r = run(&p, &gl, &["-vv"]);
    assert_code(&r, 0);
    assert_eq!(gl.world().lines().len(), 2, "{r:?}");
    let tail = &token[token.len() - 4..];
    assert!(
        r.stderr.contains(&format!(
            "POST /runners/verify: 502 Bad Gateway: upstream got …{tail}; retrying in"
        )),
        "{r:?}"
    );
    assert_no_secrets(&r, &gl);

    // until --wait runs out
    gl.world().fault(
        Some("POST"),
        "/runners/verify",
        echo(502, &format!("502 Bad Gateway: upstream got {token}")),
        100,
    );
    let r = run(&p, &gl, &["--wait", "1s"]);
    assert_code(&r, 69);
    assert!(r.stderr.contains("gave up after"), "{r:?}");
    assert_no_secrets(&r, &gl);
}
