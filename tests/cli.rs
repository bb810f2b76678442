// SPDX-License-Identifier: MIT
//! Integration tests: the real binary against the fake GitLab, asserting
//! exit codes, the requests GitLab saw, and the files written.

mod support;

use std::os::unix::fs::MetadataExt;
use support::*;

fn verify_only(lines: &[String]) -> bool {
    lines.iter().all(|l| l == "POST /runners/verify")
}

#[test]
fn first_run_creates_runners_and_writes_private_files() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let sbatch = p.path("bin/sbatch");
    std::fs::write(&sbatch, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&sbatch, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert_eq!(gl.world().lines(), vec!["POST /runners", "POST /runners"]);
    let w = gl.world();
    let batch = w
        .runners
        .values()
        .find(|r| r.description == "node12-batch")
        .expect("batch runner");
    let shell = w
        .runners
        .values()
        .find(|r| r.description == "node12-shell")
        .expect("shell runner");
    assert_eq!(batch.tags, vec!["node12", "node", "batch", "slurm"]);
    assert_eq!(shell.tags, vec!["node12", "node", "shell"]);
    assert!(!batch.run_untagged && !shell.run_untagged);
    assert_eq!(
        w.requests[0].param("token").unwrap(),
        REGISTRATION_TOKEN,
        "token file trimmed of its newline"
    );
    let config = p.read("config.toml");
    assert!(
        config.contains(&format!("token = \"{}\"", shell.token)),
        "{config}"
    );
    assert!(
        config.contains(&format!("token = \"{}\"", batch.token)),
        "{config}"
    );
    assert!(config.contains(&format!("id = {}", shell.id)), "{config}");
    assert!(
        config.contains("token_expires_at = 0001-01-01T00:00:00Z"),
        "{config}"
    );
    assert_eq!(p.mode("config.toml"), 0o600);
    assert_eq!(p.mode("runner-data.json"), 0o600);
    assert_eq!(p.state_id("shell"), shell.id);
    assert_eq!(p.state_token("batch"), batch.token);
    assert!(p.state()["shell"]["token_obtained_at"].is_string());
    assert!(
        r.stderr
            .contains(&format!("created shell runner {}", shell.id)),
        "{r:?}"
    );
    assert!(r.stderr.contains("2 runners ok"), "{r:?}");
    drop(w);
    assert_eq!(
        p.files(),
        vec![
            ".gitlab-runner-auth.lock",
            "admin-token",
            "config.template",
            "config.toml",
            "runner-data.json"
        ]
    );
    assert_no_secrets(&r, &gl);
}

#[test]
fn second_run_only_verifies_and_touches_nothing() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write(".runner_system_id", "s_0123456789ab\n");
    assert_code(&run(&p, &gl, &[]), 0);
    let config = p.snapshot("config.toml");
    let state = p.snapshot("runner-data.json");
    gl.world().requests.clear();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    let w = gl.world();
    assert_eq!(
        w.lines(),
        vec!["POST /runners/verify", "POST /runners/verify"]
    );
    assert!(
        w.requests
            .iter()
            .all(|q| q.param("system_id").unwrap() == "s_0123456789ab")
    );
    assert!(
        w.runners
            .values()
            .all(|r| r.managers == vec!["s_0123456789ab"]),
        "no <legacy> manager"
    );
    drop(w);
    assert_eq!(
        p.snapshot("config.toml"),
        config,
        "config.toml bytes and mtime"
    );
    assert_eq!(
        p.snapshot("runner-data.json"),
        state,
        "runner-data.json bytes and mtime"
    );
    assert!(r.stderr.contains("unchanged"), "{r:?}");
    assert_no_secrets(&r, &gl);
}

#[test]
fn invalid_token_is_healed_keeping_the_runner_id() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write("access-token", ADMIN_PAT);
    assert_code(&run(&p, &gl, &[]), 0);
    let id = p.state_id("shell");
    let old = p.state_token("shell");
    gl.world().rotate(id); // the stored token is now unknown to GitLab
    gl.world().requests.clear();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    let lines = gl.world().lines();
    assert!(
        lines.contains(&format!("POST /runners/{id}/reset_authentication_token")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l == "POST /runners"),
        "no new runner: {lines:?}"
    );
    assert_eq!(p.state_id("shell"), id);
    let new = gl.world().token_of(id);
    assert_ne!(new, old);
    assert_eq!(p.state_token("shell"), new);
    assert!(p.read("config.toml").contains(&new));
    assert_eq!(
        gl.world()
            .requests
            .iter()
            .find(|q| q.path.ends_with("reset_authentication_token"))
            .unwrap()
            .header("private-token"),
        Some(ADMIN_PAT)
    );
    assert!(
        r.stderr.contains(&format!("healed shell runner {id}")),
        "{r:?}"
    );
    assert_no_secrets(&r, &gl);
}

#[test]
fn token_rotated_by_gitlab_runner_is_adopted() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let id = p.state_id("shell");
    let old = p.state_token("shell");
    // gitlab-runner rotates the token itself and rewrites config.toml.
    let new = gl.world().rotate(id);
    let config = p.read("config.toml").replace(&old, &new);
    p.write("config.toml", &config);
    gl.world().requests.clear();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert!(verify_only(&gl.world().lines()), "{:?}", gl.world().lines());
    assert_eq!(p.state_token("shell"), new);
    assert_eq!(p.state_id("shell"), id);
    assert!(p.read("config.toml").contains(&new));
    assert!(
        r.stderr.contains(&format!(
            "adopted the token gitlab-runner rotated for shell runner {id}"
        )),
        "{r:?}"
    );
    assert_no_secrets(&r, &gl);
}

#[test]
fn deleted_runner_is_recreated_and_the_orphan_named() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let id = p.state_id("batch");
    gl.world().runners.remove(&id);
    gl.world().requests.clear();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    let lines = gl.world().lines();
    assert_eq!(
        lines.iter().filter(|l| *l == "POST /runners").count(),
        1,
        "{lines:?}"
    );
    let new_id = p.state_id("batch");
    assert_ne!(new_id, id);
    assert!(gl.world().runners.contains_key(&new_id));
    assert!(
        r.stderr
            .contains(&format!("old batch runner {id} may remain in GitLab")),
        "{r:?}"
    );
    assert_no_secrets(&r, &gl);
}

#[test]
fn deleted_runner_with_access_token_heal_falls_back_to_create() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write("access-token", ADMIN_PAT);
    assert_code(&run(&p, &gl, &[]), 0);
    let id = p.state_id("shell");
    gl.world().runners.remove(&id);
    gl.world().requests.clear();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    let lines = gl.world().lines();
    let want_reset = format!("POST /runners/{id}/reset_authentication_token");
    let reset = lines
        .iter()
        .position(|l| *l == want_reset)
        .expect("heal tried first");
    let create = lines
        .iter()
        .position(|l| l == "POST /runners")
        .expect("then created");
    assert!(reset < create, "{lines:?}");
    assert_ne!(p.state_id("shell"), id);
    assert!(
        r.stderr
            .contains(&format!("shell runner {id} no longer exists")),
        "{r:?}"
    );
}

#[test]
fn registration_disabled_uses_user_runners_with_an_access_token() {
    let mut world = World::default();
    world.registration_enabled = false;
    let gl = FakeGitlab::start(world);
    let p = Prefix::standard(ADMIN_PAT);
    let r = run(&p, &gl, &["--tag", "gpu"]);
    assert_code(&r, 0);
    let w = gl.world();
    assert_eq!(w.lines(), vec!["POST /user/runners", "POST /user/runners"]);
    assert!(
        w.requests
            .iter()
            .all(|q| q.header("private-token") == Some(ADMIN_PAT))
    );
    assert!(
        w.requests
            .iter()
            .all(|q| q.param("runner_type").unwrap() == "instance_type")
    );
    assert!(
        w.runners
            .values()
            .all(|r| r.token.starts_with("glrt-") && r.tags.contains(&"gpu".to_string()))
    );
    drop(w);
    assert!(p.state_token("shell").starts_with("glrt-"));
    assert_no_secrets(&r, &gl);
}

#[test]
fn registration_disabled_with_a_registration_token_explains_the_fix() {
    let mut world = World::default();
    world.registration_enabled = false;
    let gl = FakeGitlab::start(world);
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let r = run(&p, &gl, &[]);
    assert_code(&r, 78);
    assert!(
        r.stderr
            .contains("registration tokens are disabled on this GitLab"),
        "{r:?}"
    );
    assert!(r.stderr.contains("create_runner"), "{r:?}");
    assert_eq!(
        r.stderr.lines().filter(|l| l.contains("ERROR")).count(),
        1,
        "one error line: {r:?}"
    );
    assert!(!p.exists("config.toml") && !p.exists("runner-data.json"));
    assert_no_secrets(&r, &gl);
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
fn template_errors_name_line_and_column_and_write_nothing() {
    let gl = FakeGitlab::start(World::default());
    let cases = [
        (
            "[[runners]]\n  name = \"{hostname}\"\n  token = \"{shel}\"\n",
            78,
            ":3:12: unknown field 'shel'",
        ),
        (
            "[[runners]]\n  token = \"{shell:>30}\"\n  x = \"{batch}\"\n",
            65,
            ":2:12: field '{shell:>30}': format specs",
        ),
        (
            "[[runners]]\n  token = \"{}\"\n",
            65,
            ":2:12: positional field '{}'",
        ),
        (
            "x = \"{shell}\"\ny = \"{batch\"\n",
            65,
            ":2:6: '{' is never closed",
        ),
        ("x = \"{shell}\"\n", 78, "runner type 'batch' is never used"),
        (
            "x = {shell}\ny = \"{batch}\"\n",
            65,
            "renders to invalid TOML",
        ),
    ];
    for (template, code, want) in cases {
        let p = Prefix::standard(REGISTRATION_TOKEN);
        p.write("config.template", template);
        p.write("config.toml", "# the admin's old file\n");
        let before = p.snapshot("config.toml");
        let r = run(&p, &gl, &[]);
        assert_code(&r, code);
        assert!(r.stderr.contains(want), "want {want:?}: {r:?}");
        assert_eq!(p.snapshot("config.toml"), before, "{template}");
        assert!(!p.exists("runner-data.json") || code == 65);
        if code == 78 || want.contains("never closed") {
            assert!(
                gl.world().requests.is_empty(),
                "no request before the template is known good"
            );
        }
        assert_no_secrets(&r, &gl);
        gl.world().requests.clear();
        gl.world().runners.clear();
    }
}

#[test]
fn state_file_of_the_original_script_works_unchanged() {
    let gl = FakeGitlab::start(World::default());
    let (shell, batch) = {
        let mut w = gl.world();
        let s = w.add_runner("node12-shell", &["node12", "shell"], false);
        let b = w.add_runner("node12-batch", &["node12", "batch"], false);
        (s, b)
    };
    let ts = gl.world().token_of(shell);
    let tb = gl.world().token_of(batch);
    let p = Prefix::standard(REGISTRATION_TOKEN);
    // json.dump() of the registration answers, as the Python script wrote it
    p.write("runner-data.json", &format!(r#"{{"shell": {{"id": {shell}, "token": "{ts}"}}, "batch": {{"id": {batch}, "token": "{tb}"}}}}"#));
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert!(verify_only(&gl.world().lines()), "{:?}", gl.world().lines());
    assert_eq!(p.state_token("shell"), ts);
    assert_eq!(p.state_id("batch"), batch);
    assert!(p.read("config.toml").contains(&ts));
    // and the original can still read ours: same keys, ids as integers
    let st = p.state();
    assert_eq!(st["shell"]["id"], serde_json::json!(shell));
    assert_eq!(st["batch"]["token"], serde_json::json!(tb));
    assert_no_secrets(&r, &gl);
}

#[test]
fn not_configured_exits_zero_touching_nothing() {
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let mut c = command(&p);
    c.arg("--prefix").arg(&p.dir);
    let r = run_cmd(c);
    assert_code(&r, 0);
    assert!(r.stderr.contains("not configured"), "{r:?}");
    assert_eq!(p.files(), vec!["admin-token", "config.template"]);
}

#[test]
fn plan_makes_no_changes_and_exits_2_when_work_is_pending() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let r = run(&p, &gl, &["plan"]);
    assert_code(&r, 2);
    assert!(
        gl.world().requests.is_empty(),
        "no tokens yet: nothing to ask"
    );
    assert!(
        r.stdout.contains(
            "shell (no id): no token; would create runner 'node12-shell' tagged node12,node,shell"
        ),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("+  token = \"<new token for shell>\""),
        "{r:?}"
    );
    assert_eq!(p.files(), vec!["admin-token", "config.template"]);

    assert_code(&run(&p, &gl, &[]), 0);
    let id = p.state_id("shell");
    gl.world().rotate(id);
    gl.world().requests.clear();
    let before = (p.snapshot("config.toml"), p.snapshot("runner-data.json"));
    let r = run(&p, &gl, &["--dry-run"]);
    assert_code(&r, 2);
    assert!(verify_only(&gl.world().lines()), "read-only calls only");
    assert!(
        r.stdout.contains(&format!(
            "shell (runner {id}): token rejected by GitLab; would create"
        )),
        "{r:?}"
    );
    assert_eq!(
        (p.snapshot("config.toml"), p.snapshot("runner-data.json")),
        before
    );
    assert_no_secrets(&r, &gl);

    let q = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&q, &gl, &[]), 0);
    let r = run(&q, &gl, &["plan"]);
    assert_code(&r, 0);
    assert!(r.stdout.contains("nothing to do"), "{r:?}");
    assert_no_secrets(&r, &gl);
}

#[test]
fn tokens_past_75_percent_of_their_lifetime_are_rotated() {
    let mut world = World::default();
    world.token_interval = Some(1000);
    let gl = FakeGitlab::start(world);
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let id = p.state_id("shell");
    let old = p.state_token("shell");
    // pretend the token was obtained 900 s into a 1000 s lifetime
    let mut st = p.state();
    let expires = st["shell"]["token_expires_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(expires, "");
    st["shell"]["token_obtained_at"] = "2000-01-01T00:00:00Z".into();
    p.write("runner-data.json", &st.to_string());
    gl.world().requests.clear();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    let lines = gl.world().lines();
    assert_eq!(
        lines
            .iter()
            .filter(|l| *l == "POST /runners/reset_authentication_token")
            .count(),
        1,
        "{lines:?}"
    );
    let new = gl.world().token_of(id);
    assert_ne!(new, old);
    assert_eq!(p.state_token("shell"), new);
    assert_eq!(p.state_id("shell"), id);
    assert!(p.read("config.toml").contains(&new));
    assert!(r.stderr.contains("rotated shell runner"), "{r:?}");
    // --rotate-before covers the rest
    gl.world().requests.clear();
    let r = run(&p, &gl, &["--rotate-before", "1h"]);
    assert_code(&r, 0);
    assert_eq!(
        gl.world()
            .lines()
            .iter()
            .filter(|l| *l == "POST /runners/reset_authentication_token")
            .count(),
        2
    );
    assert_no_secrets(&r, &gl);
}

#[test]
fn transient_failures_are_retried() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    gl.world().requests.clear();
    gl.world().fault(
        None,
        "/runners/verify",
        FaultKind::Status {
            status: 503,
            retry_after: Some(0),
        },
        1,
    );
    gl.world().fault(
        None,
        "/runners/verify",
        FaultKind::Status {
            status: 429,
            retry_after: Some(1),
        },
        1,
    );
    gl.world()
        .fault(None, "/runners/verify", FaultKind::Drop, 1);
    let before = p.snapshot("config.toml");
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert_eq!(gl.world().lines().len(), 5, "3 failures + 2 good verifies");
    assert!(r.stderr.contains("retrying in"), "{r:?}");
    assert_eq!(p.snapshot("config.toml"), before);
}

#[test]
fn create_is_not_retried_after_an_ambiguous_failure() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    gl.world().fault(
        Some("POST"),
        "/runners",
        FaultKind::Status {
            status: 502,
            retry_after: None,
        },
        1,
    );
    let r = run(&p, &gl, &[]);
    assert_code(&r, 69);
    assert_eq!(
        gl.world().lines(),
        vec!["POST /runners"],
        "no blind second create"
    );
    assert!(!p.exists("config.toml"));
}

#[test]
fn unreachable_gitlab_exits_69_or_keeps_config_with_offline_ok() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let before = (p.snapshot("config.toml"), p.snapshot("runner-data.json"));
    // a port nobody listens on
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{closed}");
    let r = run_at(&p, &url, &["--wait", "1s"]);
    assert_code(&r, 69);
    assert!(r.stderr.contains("POST /runners/verify"), "{r:?}");
    assert!(r.stderr.contains("gave up after"), "{r:?}");
    let r = run_at(&p, &url, &["--wait", "1s", "--offline-ok"]);
    assert_code(&r, 0);
    assert!(r.stderr.contains("keeping the existing"), "{r:?}");
    assert_eq!(
        (p.snapshot("config.toml"), p.snapshot("runner-data.json")),
        before
    );
}

#[test]
fn junk_answers_are_clear_errors_that_change_nothing() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let before = (p.snapshot("config.toml"), p.snapshot("runner-data.json"));
    let cases = [
        (
            FaultKind::Raw {
                status: 200,
                content_type: "text/html".into(),
                body: "<html><body>Sign in</body></html>".into(),
            },
            65,
            "HTML page",
        ),
        (
            FaultKind::Raw {
                status: 200,
                content_type: "application/json".into(),
                body: "{\"id\": 1, \"tok".into(),
            },
            65,
            "unreadable body",
        ),
        (
            FaultKind::Raw {
                status: 302,
                content_type: "text/html".into(),
                body: String::new(),
            },
            65,
            "redirected",
        ),
        (
            FaultKind::Raw {
                status: 418,
                content_type: "application/json".into(),
                body: "{\"message\":\"teapot\"}".into(),
            },
            65,
            "418 teapot",
        ),
        (
            FaultKind::Status {
                status: 500,
                retry_after: None,
            },
            69,
            "500 500 Internal Server Error",
        ),
    ];
    for (fault, code, want) in cases {
        gl.world().fault(None, "/runners/verify", fault, 100);
        let r = run(&p, &gl, &["--wait", "1s"]);
        assert_code(&r, code);
        assert!(r.stderr.contains(want), "want {want}: {r:?}");
        assert!(r.stderr.contains("POST /runners/verify"), "{r:?}");
        assert_eq!(
            (p.snapshot("config.toml"), p.snapshot("runner-data.json")),
            before
        );
        assert_no_secrets(&r, &gl);
        gl.world().faults.clear();
    }
}

#[test]
fn bad_state_file_is_a_clear_error() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write("runner-data.json", "{\"shell\": {\"id\": 1,");
    let r = run(&p, &gl, &[]);
    assert_code(&r, 65);
    assert!(
        r.stderr.contains(&format!(
            "failed to read {}",
            path_str(&p.path("runner-data.json"))
        )),
        "{r:?}"
    );
    assert!(gl.world().requests.is_empty());
}

#[test]
fn a_second_run_waits_for_the_lock_then_fails() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p.path(".gitlab-runner-auth.lock"))
        .unwrap();
    lock.lock().unwrap();
    let r = run(&p, &gl, &["--wait", "1s"]);
    assert_code(&r, 75);
    assert!(
        r.stderr.contains("another gitlab-runner-auth holds"),
        "{r:?}"
    );
    assert!(gl.world().requests.is_empty());
    drop(lock);
    assert_code(&run(&p, &gl, &[]), 0);
}

#[test]
fn replaced_config_keeps_its_owner_and_group() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write("config.toml", "concurrent = 1\n");
    // the group of gitlab-runner (USE_INIT_USER setups) stays
    std::os::unix::fs::chown(p.path("config.toml"), Some(0), Some(998)).unwrap();
    assert_code(&run(&p, &gl, &[]), 0);
    let m = std::fs::metadata(p.path("config.toml")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (0, 998, 0o600));
}

#[test]
fn legacy_plain_text_verify_is_understood() {
    let mut world = World::default();
    world.legacy_verify = true;
    world.legacy_prefix = "t1_".into();
    let gl = FakeGitlab::start(world);
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let before = p.snapshot("config.toml");
    gl.world().requests.clear();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert!(verify_only(&gl.world().lines()));
    assert_eq!(p.snapshot("config.toml"), before);
}

#[test]
fn usage_errors_help_and_version() {
    let p = Prefix::new();
    let r = run_cmd({
        let mut c = command(&p);
        c.args(["--bogus"]);
        c
    });
    assert_code(&r, 64);
    assert!(r.stderr.contains("unexpected argument '--bogus'"), "{r:?}");
    let r = run_cmd({
        let mut c = command(&p);
        c.args(["--api-url", "gitlab.example.com", "--prefix"])
            .arg(&p.dir);
        c
    });
    assert_code(&r, 64);
    let r = run_cmd({
        let mut c = command(&p);
        c.arg("--help");
        c
    });
    assert_code(&r, 0);
    for code in ["64", "65", "69", "70", "73", "75", "77", "78"] {
        assert!(r.stdout.contains(&format!("  {code}  ")), "{code}");
    }
    let r = run_cmd({
        let mut c = command(&p);
        c.arg("-V");
        c
    });
    assert_code(&r, 0);
    assert!(r.stdout.starts_with("gitlab-runner-auth "), "{r:?}");
}

#[test]
fn environment_variables_configure_the_run() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let mut c = command(&p);
    c.env(
        "GITLAB_RUNNER_AUTH_API_URL",
        format!("{}/api/v4/", gl.url()),
    )
    .env("GITLAB_RUNNER_AUTH_PREFIX", &p.dir)
    .env("GITLAB_RUNNER_AUTH_HOSTNAME", "login3")
    .env("GITLAB_RUNNER_AUTH_TAGS", "a,b");
    let r = run_cmd(c);
    assert_code(&r, 0);
    let w = gl.world();
    let shell = w
        .runners
        .values()
        .find(|r| r.description == "login3-shell")
        .expect("shell");
    assert_eq!(shell.tags, vec!["login3", "login", "shell", "a", "b"]);
}

#[test]
fn drifted_tags_and_description_are_restored_with_an_access_token() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write("access-token", ADMIN_PAT);
    assert_code(&run(&p, &gl, &[]), 0);
    let id = p.state_id("shell");
    let batch = p.state_id("batch");
    {
        let mut w = gl.world();
        // tags drifted (still this host's by its description and tags)
        let r = w.runners.get_mut(&id).unwrap();
        r.tags = vec!["node12".into(), "shell".into(), "oops".into()];
        // renamed (still this host's by its exact tag set)
        w.runners.get_mut(&batch).unwrap().description = "renamed".into();
        w.requests.clear();
    }
    let r = run(&p, &gl, &["plan"]);
    assert_code(&r, 2);
    assert!(r.stdout.contains(&format!("shell (runner {id}): would update description and tags on GitLab: 'node12-shell' [node12,shell,oops] -> 'node12-shell' [node12,node,shell]")), "{r:?}");
    assert!(r.stdout.contains(&format!("batch (runner {batch}): would update description and tags on GitLab: 'renamed' [node12,node,batch] -> 'node12-batch' [node12,node,batch]")), "{r:?}");
    assert!(
        gl.world()
            .requests
            .iter()
            .all(|q| q.method == "GET" || q.path == "/runners/verify")
    );
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert!(gl.world().lines().contains(&format!("PUT /runners/{id}")));
    let w = gl.world();
    assert_eq!(w.runners[&id].tags, vec!["node12", "node", "shell"]);
    assert_eq!(w.runners[&id].description, "node12-shell");
    assert_eq!(w.runners[&batch].description, "node12-batch");
    drop(w);
    // and nothing to do afterwards: no write calls
    gl.world().requests.clear();
    assert_code(&run(&p, &gl, &[]), 0);
    assert!(
        gl.world()
            .requests
            .iter()
            .all(|q| q.method == "GET" || q.path == "/runners/verify"),
        "{:?}",
        gl.world().lines()
    );
}

#[test]
fn prune_deletes_unconfigured_runners_up_to_max_delete() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write("access-token", ADMIN_PAT);
    assert_code(&run(&p, &gl, &[]), 0);
    let (old1, old2, other) = {
        let mut w = gl.world();
        let a = w.add_runner("node12-gpu", &["node12", "gpu"], false);
        let b = w.add_runner("node12-shell", &["node12", "node", "shell"], false); // a pile-up
        let c = w.add_runner("node13-shell", &["node13", "shell"], false); // another host
        (a, b, c)
    };
    let r = run(&p, &gl, &["--prune", "--max-delete", "1"]);
    assert_code(&r, 78);
    assert!(
        r.stderr.contains("more than --max-delete 1; none deleted"),
        "{r:?}"
    );
    assert_eq!(gl.world().runners.len(), 5);
    let r = run(&p, &gl, &["--prune"]);
    assert_code(&r, 0);
    let w = gl.world();
    assert!(!w.runners.contains_key(&old1) && !w.runners.contains_key(&old2));
    assert!(w.runners.contains_key(&other));
    assert!(w.lines().contains(&format!("DELETE /runners/{old1}")));
    assert!(
        w.requests
            .iter()
            .any(|q| q.path == "/runners/all" && q.query.contains("tag_list=node12"))
    );
}

#[test]
fn status_reports_each_runner_and_fails_on_an_invalid_one() {
    let mut world = World::default();
    world.token_interval = Some(30 * 86_400);
    let gl = FakeGitlab::start(world);
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let before = p.snapshot("runner-data.json");
    let r = run(&p, &gl, &["status"]);
    assert_code(&r, 0);
    assert!(r.stdout.starts_with("TYPE"), "{r:?}");
    assert!(
        r.stdout.lines().any(|l| l.starts_with("shell")
            && l.contains(" yes ")
            && (l.ends_with(" 29") || l.ends_with(" 30"))),
        "{r:?}"
    );
    gl.world().rotate(p.state_id("batch"));
    let r = run(&p, &gl, &["status", "--json"]);
    assert_code(&r, 77);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["type"], "batch");
    assert_eq!(v[0]["valid"], false);
    assert_eq!(v[1]["valid"], true);
    assert!(verify_only(&gl.world().lines()[2..]));
    assert_eq!(
        p.snapshot("runner-data.json"),
        before,
        "status is read-only"
    );
    assert_no_secrets(&r, &gl);
}

#[test]
fn unregister_deletes_the_runners_and_clears_the_state() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let r = run(&p, &gl, &["unregister"]);
    assert_code(&r, 0);
    assert!(gl.world().runners.is_empty());
    assert_eq!(
        gl.world().lines()[2..],
        ["DELETE /runners", "DELETE /runners"]
    );
    assert_eq!(p.state(), serde_json::json!({"batch": {}, "shell": {}}));
    assert_no_secrets(&r, &gl);
}

#[test]
fn quiet_prints_only_the_summary() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let r = run(&p, &gl, &["-q"]);
    assert_code(&r, 0);
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains("2 runners ok (2 created); "), "{r:?}");
}

#[test]
fn the_example_template_renders_to_valid_toml() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write(
        "config.template",
        include_str!("../packaging/examples/config.template"),
    );
    p.write(
        "runner-data.json",
        include_str!("../packaging/examples/runner-data.json"),
    );
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    let config: toml::Table = p.read("config.toml").parse().unwrap();
    let runners = config["runners"].as_array().unwrap();
    assert_eq!(runners.len(), 2);
    assert_eq!(
        runners[0]["id"].as_integer(),
        Some(p.state_id("shell") as i64)
    );
    assert!(
        p.read("config.toml").contains("{hostname}"),
        "doubled braces stay literal"
    );
}

#[test]
fn https_with_the_site_ca_from_ca_file_or_ssl_cert_file() {
    let gl = FakeGitlab::start_tls(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write("site-ca.pem", gl.ca_pem.as_deref().unwrap());
    let ca = path_str(&p.path("site-ca.pem"));
    let r = run(&p, &gl, &["--wait", "1s"]);
    assert_code(&r, 77);
    assert!(r.stderr.contains("POST /runners"), "{r:?}");
    assert!(r.stderr.contains("--ca-file"), "{r:?}");
    assert!(gl.world().runners.is_empty());
    let r = run(&p, &gl, &["--ca-file", &ca]);
    assert_code(&r, 0);
    assert_eq!(gl.world().runners.len(), 2);
    assert!(!r.stderr.contains("plain http"), "{r:?}");
    // the distro way: the site CA in the system bundle
    let mut c = command(&p);
    c.env("SSL_CERT_FILE", &ca)
        .args(["--api-url", &gl.url(), "--prefix"])
        .arg(&p.dir)
        .args(["--hostname", HOST]);
    let r = run_cmd(c);
    assert_code(&r, 0);
    assert!(r.stderr.contains("2 runners ok (2 verified); "), "{r:?}");
}

#[test]
fn expired_token_is_healed_and_an_expired_access_token_is_refused() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write("access-token", ADMIN_PAT);
    assert_code(&run(&p, &gl, &[]), 0);
    let id = p.state_id("batch");
    // the token expired while the host was down: invisible to verify
    gl.world().runners.get_mut(&id).unwrap().token_expires_at = Some(1);
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert!(
        r.stderr.contains(&format!("healed batch runner {id}")),
        "{r:?}"
    );
    assert_eq!(p.state_id("batch"), id);
    // now the access token itself has expired
    gl.world().pats.get_mut(ADMIN_PAT).unwrap().expired = true;
    gl.world().rotate(id);
    let before = (p.snapshot("config.toml"), p.snapshot("runner-data.json"));
    let r = run(&p, &gl, &[]);
    assert_code(&r, 77);
    assert!(
        r.stderr.contains(&format!(
            "GET /runners/{id}: 401 invalid_token: Token is expired"
        )),
        "{r:?}"
    );
    assert!(r.stderr.contains("check access-token"), "{r:?}");
    assert_eq!(
        (p.snapshot("config.toml"), p.snapshot("runner-data.json")),
        before
    );
    assert_no_secrets(&r, &gl);
}

#[test]
fn access_token_without_create_runner_scope_is_explained() {
    let mut world = World::default();
    world.registration_enabled = false;
    world.pats.insert(
        "glpat-ReadOnlyReadOnly01234".into(),
        support::fake_gitlab::Pat {
            scopes: vec!["read_api".into()],
            admin: true,
            expired: false,
            revoked: false,
        },
    );
    let gl = FakeGitlab::start(world);
    let p = Prefix::standard("glpat-ReadOnlyReadOnly01234");
    let r = run(&p, &gl, &[]);
    assert_code(&r, 77);
    assert!(
        r.stderr
            .contains("POST /user/runners: 403 insufficient_scope"),
        "{r:?}"
    );
    assert!(r.stderr.contains("create_runner"), "{r:?}");
    assert!(!p.exists("config.toml"));
    assert!(!r.output().contains("glpat-ReadOnlyReadOnly01234"));
}

#[test]
fn unwritable_config_path_exits_73_keeping_the_state() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let missing = p.path("no-such-dir/config.toml");
    let r = run(&p, &gl, &["--config", &path_str(&missing)]);
    assert_code(&r, 73);
    assert!(
        r.stderr.contains(&format!(
            "failed to write {}: its directory",
            path_str(&missing)
        )),
        "{r:?}"
    );
    // found before GitLab issued any token
    assert!(gl.world().requests.is_empty());
    assert!(!p.exists("runner-data.json"));
    assert_code(&run(&p, &gl, &[]), 0);
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
fn a_token_written_literally_in_the_template_is_left_alone() {
    let gl = FakeGitlab::start(World::default());
    let manual = gl.world().add_runner("hand-made", &["x"], false);
    let token = gl.world().token_of(manual);
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write("config.template", &format!("{TEMPLATE}\n[[runners]]\n  name = \"manual\"\n  token = \"{token}\"\n  executor = \"shell\"\n"));
    assert_code(&run(&p, &gl, &[]), 0);
    gl.world().requests.clear();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert_eq!(gl.world().lines().len(), 2, "only our two verifies");
    assert!(!r.stderr.contains("WARN"), "{r:?}");
}

#[test]
fn prune_follows_every_page_of_the_runner_list() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write("access-token", ADMIN_PAT);
    assert_code(&run(&p, &gl, &[]), 0);
    for i in 0..130 {
        let ty = format!("old{i}");
        gl.world()
            .add_runner(&format!("node12-{ty}"), &["node12", &ty], false);
    }
    gl.world().requests.clear();
    let r = run(&p, &gl, &["--prune", "--max-delete", "500"]);
    assert_code(&r, 0);
    let w = gl.world();
    assert_eq!(w.runners.len(), 2, "only the configured runners are left");
    let pages: Vec<&str> = w
        .requests
        .iter()
        .filter(|q| q.path == "/runners/all")
        .map(|q| q.query.as_str())
        .collect();
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(pages[1].contains("page=2"), "{pages:?}");
    assert!(r.stderr.contains("130 deleted"), "{r:?}");
}

/// A stateless prefix: admin and access token, the standard template.
fn stateless_prefix() -> Prefix {
    let p = Prefix::standard(ADMIN_PAT);
    p.write("access-token", ADMIN_PAT);
    p
}

#[test]
fn stateless_first_run_creates_then_only_reads() {
    let mut world = World::default();
    world.registration_enabled = false;
    let gl = FakeGitlab::start(world);
    let p = stateless_prefix();
    let r = run(&p, &gl, &["--stateless"]);
    assert_code(&r, 0);
    let lines = gl.world().lines();
    assert_eq!(lines[0], "GET /runners/all");
    assert_eq!(
        lines.iter().filter(|l| *l == "POST /user/runners").count(),
        2,
        "{lines:?}"
    );
    assert!(!p.exists("runner-data.json"), "stateless writes no state");
    let shell = gl
        .world()
        .runners
        .values()
        .find(|r| r.description == "node12-shell")
        .unwrap()
        .clone();
    assert!(p.read("config.toml").contains(&shell.token));
    assert!(
        p.read("config.toml")
            .contains(&format!("id = {}", shell.id))
    );
    let before = p.snapshot("config.toml");
    gl.world().requests.clear();
    let r = run(&p, &gl, &["--stateless"]);
    assert_code(&r, 0);
    let w = gl.world();
    assert!(
        w.requests
            .iter()
            .all(|q| q.method == "GET" || q.path == "/runners/verify"),
        "{:?}",
        w.lines()
    );
    drop(w);
    assert_eq!(p.snapshot("config.toml"), before);
    assert!(!p.exists("runner-data.json"));
    assert_no_secrets(&r, &gl);
}

#[test]
fn stateless_lost_config_gets_fresh_tokens_for_the_same_runners() {
    let gl = FakeGitlab::start(World::default());
    let p = stateless_prefix();
    assert_code(&run(&p, &gl, &["--stateless"]), 0);
    let ids: Vec<u64> = gl.world().runners.keys().copied().collect();
    std::fs::remove_file(p.path("config.toml")).unwrap();
    gl.world().requests.clear();
    let r = run(&p, &gl, &["--stateless"]);
    assert_code(&r, 0);
    let lines = gl.world().lines();
    for id in &ids {
        assert!(
            lines.contains(&format!("POST /runners/{id}/reset_authentication_token")),
            "{lines:?}"
        );
    }
    assert!(
        !lines.iter().any(|l| l == "POST /user/runners"),
        "no new runners: {lines:?}"
    );
    assert_eq!(gl.world().runners.keys().copied().collect::<Vec<_>>(), ids);
    let config = p.read("config.toml");
    for id in &ids {
        assert!(config.contains(&gl.world().token_of(*id)));
    }
    assert_no_secrets(&r, &gl);
}

#[test]
fn stateless_deletes_the_pile_up_keeping_the_held_runner() {
    let gl = FakeGitlab::start(World::default());
    let p = stateless_prefix();
    assert_code(&run(&p, &gl, &["--stateless"]), 0);
    let held = gl
        .world()
        .runners
        .values()
        .find(|r| r.description == "node12-shell")
        .unwrap()
        .id;
    // what re-registering without cleanup leaves behind: older and newer copies
    let newer = gl
        .world()
        .add_runner("node12-shell", &["node12", "node", "shell"], true);
    gl.world().requests.clear();
    let r = run(&p, &gl, &["--stateless", "plan"]);
    assert_code(&r, 2);
    assert!(
        r.stdout.contains(&format!(
            "would delete runner {newer} ('node12-shell'): extra runners"
        )),
        "{r:?}"
    );
    assert!(gl.world().runners.contains_key(&newer));
    let r = run(&p, &gl, &["--stateless"]);
    assert_code(&r, 0);
    let w = gl.world();
    assert!(w.runners.contains_key(&held) && !w.runners.contains_key(&newer));
    assert!(w.lines().contains(&format!("DELETE /runners/{newer}")));
    drop(w);
    // without a held token, the newest one wins
    std::fs::remove_file(p.path("config.toml")).unwrap();
    let older = held;
    let newest = gl
        .world()
        .add_runner("node12-shell", &["node12", "shell"], true);
    assert_code(&run(&p, &gl, &["--stateless"]), 0);
    let w = gl.world();
    assert!(w.runners.contains_key(&newest) && !w.runners.contains_key(&older));
}

#[test]
fn stateless_uses_tokens_old_gitlab_still_shows() {
    let mut world = World::default();
    world.details_with_token = true;
    let gl = FakeGitlab::start(world);
    let p = stateless_prefix();
    assert_code(&run(&p, &gl, &["--stateless"]), 0);
    std::fs::remove_file(p.path("config.toml")).unwrap();
    gl.world().requests.clear();
    let r = run(&p, &gl, &["--stateless"]);
    assert_code(&r, 0);
    let lines = gl.world().lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("reset_authentication_token") || l == "POST /user/runners"),
        "{lines:?}"
    );
    for r in gl.world().runners.values() {
        assert!(p.read("config.toml").contains(&r.token));
    }
}

#[test]
fn stateless_needs_an_access_token() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(ADMIN_PAT);
    let r = run(&p, &gl, &["--stateless"]);
    assert_code(&r, 78);
    assert!(
        r.stderr.contains("--stateless needs an access token"),
        "{r:?}"
    );
    assert!(gl.world().requests.is_empty());
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
fn without_a_system_id_file_verify_sends_the_one_gitlab_runner_will_derive() {
    let machine_id = ["/var/lib/dbus/machine-id", "/etc/machine-id"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.trim().to_string())
        .find(|t| !t.is_empty());
    let Some(machine_id) = machine_id else {
        eprintln!("no machine id on this host: gitlab-runner would pick a random system id");
        return;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, machine_id.as_bytes());
    let tag = ring::hmac::sign(&key, b"gitlab-runner");
    let want: String = tag.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    assert_code(&run(&p, &gl, &[]), 0);
    let w = gl.world();
    let verify = w
        .requests
        .iter()
        .find(|q| q.path == "/runners/verify")
        .unwrap();
    assert_eq!(verify.param("system_id").unwrap(), &format!("s_{want}"));
    assert!(
        w.runners
            .values()
            .all(|r| !r.managers.contains(&"<legacy>".to_string()))
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
fn older_gitlab_without_reset_by_id_or_user_runners() {
    let mut world = World::default();
    world.no_reset_by_id = true;
    world.no_user_runners = true;
    world.legacy_verify = true;
    let gl = FakeGitlab::start(world);
    // GitLab 13/14: an access token cannot create runners, and says so
    let q = Prefix::standard(ADMIN_PAT);
    let r = run(&q, &gl, &[]);
    assert_code(&r, 78);
    assert!(
        r.stderr
            .contains("this GitLab has no POST /user/runners (it came in 15.10)"),
        "{r:?}"
    );
    // a registration token works; a broken token cannot be healed by id, so a new runner is made
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write("access-token", ADMIN_PAT);
    assert_code(&run(&p, &gl, &[]), 0);
    let id = p.state_id("shell");
    gl.world().rotate(id);
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert!(
        r.stderr
            .contains("cannot reset a runner's token by id (before 14.3)"),
        "{r:?}"
    );
    assert!(
        r.stderr
            .contains(&format!("old shell runner {id} may remain in GitLab")),
        "{r:?}"
    );
    assert_ne!(p.state_id("shell"), id);
    assert!(
        gl.world().runners.contains_key(&id),
        "the runner was not taken for deleted"
    );
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
    gl.world().fault(
        Some("POST"),
        "/runners",
        FaultKind::Raw {
            status: 201,
            content_type: "application/json".into(),
            body: junk.into(),
        },
        1,
    );
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
fn group_runners_are_created_listed_and_pruned_in_their_group() {
    let mut world = World::default();
    world.registration_enabled = false;
    let gl = FakeGitlab::start(world);
    let p = stateless_prefix();
    let group = ["--runner-type", "group_type", "--group-id", "42"];
    let r = run(&p, &gl, &[&group[..], &["--stateless"]].concat());
    assert_code(&r, 0);
    {
        let w = gl.world();
        assert!(
            w.runners
                .values()
                .all(|r| r.runner_type == "group_type" && r.owner == Some(42))
        );
        let create = w
            .requests
            .iter()
            .find(|q| q.path == "/user/runners")
            .unwrap();
        assert_eq!(create.param("group_id").unwrap(), 42);
        let list = w
            .requests
            .iter()
            .find(|q| q.path == "/groups/42/runners")
            .expect("the group's list");
        assert!(list.query.contains("type=group_type"), "{}", list.query);
    }
    // another group's runner with this host's tag is not ours to touch
    let other = gl.world().add_runner("node12-gpu", &["node12"], true);
    gl.world().runners.get_mut(&other).unwrap().runner_type = "group_type".into();
    gl.world().runners.get_mut(&other).unwrap().owner = Some(7);
    let r = run(&p, &gl, &[&group[..], &["--stateless", "--prune"]].concat());
    assert_code(&r, 0);
    assert!(gl.world().runners.contains_key(&other), "{r:?}");
    assert_eq!(gl.world().runners.len(), 3);
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

#[test]
fn stateless_status_and_unregister_work_from_gitlab() {
    let gl = FakeGitlab::start(World::default());
    let p = stateless_prefix();
    assert_code(&run(&p, &gl, &["--stateless"]), 0);
    let before = p.snapshot("config.toml");
    let r = run(&p, &gl, &["--stateless", "status", "--json"]);
    assert_code(&r, 0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|row| row["valid"] == true && row["id"].is_u64()),
        "{v}"
    );
    let pile = gl
        .world()
        .add_runner("node12-batch", &["node12", "batch"], true);
    let r = run(&p, &gl, &["--stateless", "status"]);
    assert_code(&r, 0);
    assert!(
        gl.world().runners.contains_key(&pile),
        "status deletes nothing"
    );
    let r = run(&p, &gl, &["--stateless", "unregister"]);
    assert_code(&r, 0);
    assert!(gl.world().runners.is_empty(), "{r:?}");
    assert!(r.stderr.contains("3 runner(s) deleted"), "{r:?}");
    assert!(!p.exists("runner-data.json"));
    assert_eq!(p.snapshot("config.toml"), before);
    assert_no_secrets(&r, &gl);
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
            .contains("POST /runners: 400 400 Bad request - …0123 (from body)"),
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
            "POST /runners/{id}/reset_authentication_token: 400 400 Bad request - …6789 glpat-…6789"
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
            "POST /runners/verify: 502 502 Bad Gateway: upstream got …{tail}; retrying in"
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

#[test]
fn plan_prints_no_token_of_config_toml_in_any_quoting() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let config = p.read("config.toml");
    let shell = p.state_token("shell");

    // every string in single quotes (TOML literal strings)
    p.write("config.toml", &config.replace('"', "'"));
    let r = run(&p, &gl, &["plan"]);
    assert_code(&r, 2);
    assert!(r.stdout.contains("-  token = '…"), "{r:?}");
    assert_no_secrets(&r, &gl);

    // a token this host never stored (gitlab-runner rotated it), written in
    // ways that TOML may or may not accept
    let rotated = gl.world().rotate(p.state_id("shell"));
    let shown = format!("…{}", &rotated[rotated.len() - 4..]);
    let line = format!("token = \"{shell}\"");
    let variants = [
        format!("token = '{rotated}'"),
        format!("token = '{rotated}"),
        format!("token = \"{rotated}"),
        format!("token = \"\"\"\n{rotated}\n\"\"\""),
        format!("token = '''{rotated}"),
        format!("token = {rotated}"),
        format!("\"token\" = '{rotated}'"),
        format!("{line}\n  environment = [\"RUNNER_TOKEN={rotated}\", \"X=glrt-{rotated}\"]"),
        format!("{line}\n  [[runners]\n  token = '{rotated}"),
    ];
    for v in variants {
        p.write("config.toml", &config.replace(&line, &v));
        let r = run(&p, &gl, &["plan"]);
        assert_code(&r, 2);
        assert!(r.stdout.contains("would rewrite"), "{v}: {r:?}");
        assert!(
            r.stdout.contains(&shown),
            "the old line, masked: {v}: {r:?}"
        );
        assert_no_secrets(&r, &gl);
    }
}
