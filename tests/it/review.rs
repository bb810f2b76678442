// SPDX-License-Identifier: MIT
//! Regressions from a security review of the trust and ownership rules:
//! each test is an attack that worked before its fix (symlink chains to the
//! prefix, a prefix redirected mid-run, SIGTERM during a create, a copied
//! prefix whose runner details cannot be read, a tag set that outweighed
//! another host's description, unregister on a copied prefix, a template
//! error quoting a literal secret, a world-readable state).

use crate::support::*;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A scratch tree, removed when dropped.
struct Tree(PathBuf);

impl Tree {
    fn new(name: &str) -> Tree {
        let d = std::env::temp_dir().join(format!("gra-review-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        chmod(&d, 0o755);
        Tree(d)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `base/a -> base/m/n -> base/x`, with `base/m` world-writable (no sticky
/// bit) and the real prefix `base/x/p` (root, 0700). The prefix as the
/// admin passes it: `base/a/p`. Whoever can write `base/m` can retarget
/// `n`, and so the whole prefix.
fn chained_prefix(t: &Tree, admin: &str) -> (PathBuf, PathBuf) {
    let base = &t.0;
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

/// Finding 1 (check): a prefix whose path resolves through a symlink that
/// sits in a world-writable directory passes StrictModes. `check_dir`
/// checks the ancestors of the path as given and of its canonical form,
/// but not the directories holding the intermediate symlinks of a chain.
#[test]
fn f1_a_prefix_reached_through_a_symlink_in_a_world_writable_directory_is_refused() {
    root_only!();
    let gl = FakeGitlab::start(World::default());
    let t = Tree::new("chain");
    let (prefix, _real) = chained_prefix(&t, ADMIN_PAT);
    let r = run_prefix(&prefix, &gl, "node12", &[]);
    assert_code(&r, 77);
    assert!(gl.world().requests.is_empty(), "{:?}", gl.world().lines());
}

/// Finding 1 (impact): the same layout, retargeted by another user while
/// the run waits on GitLab. `State::save` swallows the trust error of the
/// planted `runner-data.json` (`same_content`), and `write_atomic` fchowns
/// the new file to the owner of whatever sits at the path: the attacker
/// gets a 0600 file, owned by them, holding every runner token.
#[test]
fn f1_a_prefix_redirected_mid_run_never_hands_tokens_to_another_user() {
    root_only!();
    let gl = FakeGitlab::start(World::default());
    gl.world().fault(
        Some("POST"),
        "/user/runners",
        FaultKind::Delay(Duration::from_millis(1500)),
        2,
    );
    let t = Tree::new("redirect");
    let (prefix, _real) = chained_prefix(&t, ADMIN_PAT);
    let base = t.0.clone();
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

// Finding 2 (SIGTERM during a create lost the issued token) is covered by
// `faults::sigterm_during_a_create_saves_the_token_and_exits_143`, with the
// signal placed by the fake's request log.

#[test]
fn f3_copied_prefix_with_unreadable_details_never_resets_the_other_hosts_tokens() {
    let mut world = World::default();
    world.token_interval = Some(30 * 86_400);
    let gl = FakeGitlab::start(world);
    let p42 = Prefix::standard(ADMIN_PAT);
    p42.write("access-token", ADMIN_PAT);
    assert_code(&run_host(&p42, &gl.url(), "login42", &[]), 0);
    let theirs: Vec<(u64, String)> = gl
        .world()
        .runners
        .values()
        .map(|r| (r.id, r.token.clone()))
        .collect();
    let p43 = Prefix::new();
    for f in [
        "admin-token",
        "access-token",
        "config.template",
        "runner-data.json",
        "config.toml",
    ] {
        p43.write(f, &p42.read(f));
    }
    gl.world().fault(
        Some("GET"),
        "/runners/1",
        FaultKind::Status {
            status: 403,
            retry_after: None,
        },
        100,
    );
    gl.world().requests.clear();
    let r = run_host(&p43, &gl.url(), "login43", &["--rotate-before", "60d"]);
    let lines = gl.world().lines();
    for (id, token) in &theirs {
        assert_eq!(
            &gl.world().runners[id].token,
            token,
            "login43 reset login42's runner {id}: {lines:?}\n{r:?}"
        );
    }
}

/// Finding 4: the exact-tag-set rule ignores a description naming another
/// host. login42's shell runner whose `login42` tag was removed in the UI
/// (tags `login, shell`) is taken over by host `login` in stateless mode:
/// reset by id (login42's token dies) and used as login's own. login42
/// itself then calls its own runner "another host's".
#[test]
fn f4_login_never_takes_over_login42s_runner_that_lost_its_hostname_tag() {
    let gl = FakeGitlab::start(World::default());
    let p42 = Prefix::standard(ADMIN_PAT);
    p42.write("access-token", ADMIN_PAT);
    assert_code(&run_host(&p42, &gl.url(), "login42", &[]), 0);
    let id = p42.state_id("shell");
    gl.world().runners.get_mut(&id).unwrap().tags = vec!["login".into(), "shell".into()];
    let before = gl.world().runners[&id].clone();
    let p = Prefix::standard(ADMIN_PAT);
    p.write("access-token", ADMIN_PAT);
    gl.world().requests.clear();
    let r = run_host(&p, &gl.url(), "login", &["--stateless"]);
    let lines = gl.world().lines();
    assert_eq!(
        gl.world().runners.get(&id),
        Some(&before),
        "login touched login42-shell ({id}): {lines:?}\n{r:?}"
    );
}

/// Finding 5: `unregister` deletes by token with no ownership check when
/// there is no access token (or the entry has no id): a prefix copied from
/// login42 makes login43's decommissioning delete login42's runners.
#[test]
fn f5_unregister_on_a_copied_prefix_never_deletes_the_other_hosts_runners() {
    let gl = FakeGitlab::start(World::default());
    let p42 = Prefix::standard(ADMIN_PAT);
    p42.write("access-token", ADMIN_PAT);
    assert_code(&run_host(&p42, &gl.url(), "login42", &[]), 0);
    let p43 = Prefix::new();
    for f in [
        "admin-token",
        "access-token",
        "config.template",
        "runner-data.json",
    ] {
        p43.write(f, &p42.read(f));
    }
    let r = run_host(&p43, &gl.url(), "login43", &["unregister"]);
    assert_code(&r, 0);
    assert_eq!(
        gl.world().runners.len(),
        2,
        "login43 deleted login42's runners: {r:?}"
    );
    assert!(r.stderr.contains("is another host's: not deleted"), "{r:?}");
    // without an access token nothing can be checked: the run says so
    std::fs::remove_file(p43.path("access-token")).unwrap();
    let r = run_host(&p43, &gl.url(), "login43", &["unregister"]);
    assert!(
        r.stderr.contains("cannot check that they are this host's"),
        "{r:?}"
    );
}

/// Finding 6: a template error quotes the field text, which may be a
/// literal secret (JSON in a template with undoubled braces).
#[test]
fn f6_a_template_error_never_quotes_a_literal_secret() {
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

/// Finding 7: a runner-data.json (tokens) that every local user can read,
/// as the original script left it, is accepted and kept so, silently.
#[test]
fn f7_a_world_readable_state_is_fixed_or_at_least_warned_about() {
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
