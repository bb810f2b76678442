// SPDX-License-Identifier: MIT
//! A first run: the runners created (with the registration token, or with an
//! access token when registration is disabled), the template rendered and
//! the files written (modes, owner); and the no-change run after it.

use crate::support;
use crate::support::*;
use std::os::unix::fs::MetadataExt;

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
        w.runner_requests()
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
fn the_example_template_renders_to_valid_toml() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write(
        "config.template",
        include_str!("../../packaging/examples/config.template"),
    );
    p.write(
        "runner-data.json",
        include_str!("../../packaging/examples/runner-data.json"),
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
            expires_at: None,
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
fn a_token_written_literally_in_the_template_is_left_alone() {
    let gl = FakeGitlab::start(World::default());
    let manual = gl.world().add_runner("hand-made", &["x"], false);
    let token = gl.world().token_of(manual);
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write("config.template", &format!("{TEMPLATE}\n[[runners]]\n  name = \"manual\"\n  token = \"{token}\"\n  executor = \"shell\"\n"));
    point_at(&p, &gl.url());
    assert_code(&run(&p, &gl, &[]), 0);
    gl.world().requests.clear();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert_eq!(gl.world().lines().len(), 2, "only our two verifies");
    assert!(!r.stderr.contains("WARN"), "{r:?}");
}
