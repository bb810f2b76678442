// SPDX-License-Identifier: MIT
//! Keeping tokens valid: verify, rotation before expiry, healing an invalid
//! or expired token, adopting a token gitlab-runner rotated, re-creating a
//! deleted runner; older GitLab versions.

use crate::support::*;

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
fn deleted_runner_with_access_token_is_recreated_without_a_doomed_heal() {
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
    // GET /runners/:id said 404: no reset by id is tried
    assert!(lines.contains(&format!("GET /runners/{id}")), "{lines:?}");
    assert!(
        !lines.contains(&format!("POST /runners/{id}/reset_authentication_token")),
        "{lines:?}"
    );
    assert!(lines.contains(&"POST /runners".to_string()), "{lines:?}");
    assert_ne!(p.state_id("shell"), id);
    assert!(
        r.stderr
            .contains(&format!("runner {id} no longer exists in GitLab")),
        "{r:?}"
    );
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
            .contains("this GitLab has no POST /user/runners (it came in 15.11)"),
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

/// A date `days` from now, as GitLab shows a token's `expires_at`.
fn date_in(days: i64) -> String {
    let t = gitlab_runner_auth::clock::now() + days * 86_400;
    gitlab_runner_auth::clock::format(t)[..10].to_string()
}

#[test]
fn an_access_token_expiring_soon_is_warned_about_once_a_run_and_shown_by_status() {
    let gl = FakeGitlab::start(World::default());
    gl.world().pats.get_mut(ADMIN_PAT).unwrap().expires_at = Some(date_in(10));
    let p = pat_prefix(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    let file = path_str(&p.path("access-token"));
    let warning = format!("the access token in {file} expires on ");
    assert_eq!(r.stderr.matches(&warning).count(), 1, "{r:?}");
    assert!(
        r.stderr.contains("days left): replace it before then"),
        "{r:?}"
    );
    assert_eq!(gl.world().token_reads(), 2, "one read a run");
    // --warn-before 7d: not yet
    let r = run(&p, &gl, &["--warn-before", "7d"]);
    assert!(!r.stderr.contains(&warning), "{r:?}");
    // status: a row, and in --json
    let r = run(&p, &gl, &["status"]);
    assert_code(&r, 0);
    let row = r
        .stdout
        .lines()
        .find(|l| l.starts_with("access-token"))
        .unwrap_or_else(|| panic!("{r:?}"));
    assert!(row.contains(&file) && row.contains("api"), "{row}");
    assert!(row.ends_with(" 9") || row.ends_with(" 10"), "{row}");
    let r = run(&p, &gl, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let t = &v["access_tokens"][0];
    assert_eq!(t["role"], "access-token");
    assert_eq!(t["scopes"], serde_json::json!(["api"]));
    assert!(t["days_left"] == 9 || t["days_left"] == 10, "{t}");
    assert_no_secrets(&r, &gl);
}

#[test]
fn an_access_token_without_the_scope_its_file_needs_is_warned_about() {
    let gl = FakeGitlab::start(World::default());
    let weak = "glpat-ReadOnlyReadOnlyRead0123";
    gl.world().pats.insert(
        weak.into(),
        gitlab_runner_auth_fake_pat(vec!["read_api".into(), "create_runner".into()]),
    );
    let p = Prefix::standard(weak);
    p.write("access-token", weak);
    let r = run(&p, &gl, &["plan"]);
    let file = path_str(&p.path("access-token"));
    assert!(
        r.stderr.contains(&format!(
            "the access token in {file} has scopes read_api,create_runner but its use as access-token needs api"
        )),
        "{r:?}"
    );
    // as admin-token, create_runner is enough: no warning for that file
    let admin = path_str(&p.path("admin-token"));
    assert!(
        !r.stderr
            .contains(&format!("the access token in {admin} has scopes")),
        "{r:?}"
    );
    // GitLab before 15.5 cannot say: no warning, status says so
    gl.world().no_token_self = true;
    let r = run(&p, &gl, &["status"]);
    assert!(!r.stderr.contains("has scopes"), "{r:?}");
    assert!(r.stdout.contains("(unknown: GitLab < 15.5)"), "{r:?}");
}

fn gitlab_runner_auth_fake_pat(scopes: Vec<String>) -> crate::support::fake_gitlab::Pat {
    crate::support::fake_gitlab::Pat {
        scopes,
        admin: true,
        expired: false,
        revoked: false,
        expires_at: None,
    }
}
