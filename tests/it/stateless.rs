// SPDX-License-Identifier: MIT
//! `--stateless`: no runner-data.json; this host's runners are found in
//! GitLab by description and tag; a token issued before SIGTERM is kept
//! beside config.toml.

use crate::support::*;

/// SIGTERM during a create in stateless mode: a run stopped by SIGTERM
/// must finish persisting a token already issued, although stateless mode
/// has no state file and `config.toml` is not written yet (for a rotation
/// the live `config.toml` would keep a dead token). The token is kept in a
/// recovery file beside config.toml, and the next start uses it.
#[test]
fn stateless_sigterm_after_a_create_keeps_the_issued_token() {
    let p_args = ["--stateless"];
    let first_create = {
        let gl = FakeGitlab::start(World::default());
        let p = pat_prefix(REGISTRATION_TOKEN);
        assert_code(&run(&p, &gl, &p_args), 0);
        gl.world()
            .lines()
            .iter()
            .position(|l| l == "POST /runners")
            .unwrap()
    };
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(REGISTRATION_TOKEN);
    let r = run_hooked(
        &p,
        &gl,
        &p_args,
        &[(first_create, Phase::Arrival, Some("TERM"), Then::Continue)],
    );
    assert_code(&r, 143);
    let issued = gl.world().runners.values().next().unwrap().token.clone();
    // kept in stateless mode's recovery file beside config.toml
    let kept = p
        .files()
        .iter()
        .any(|f| f.starts_with(".config.toml.issued-") && p.read(f).contains(&issued));
    assert!(
        kept,
        "the issued token is in no file:\n{r:?} {:?}",
        p.files()
    );
    // and the next start uses it: no reset, one more create for the other type
    gl.world().requests.clear();
    assert_code(&run(&p, &gl, &p_args), 0);
    assert!(p.read("config.toml").contains(&issued));
    assert_eq!(gl.world().runners.len(), 2);
    assert!(
        gl.world().lines().iter().all(|l| !l.contains("reset")),
        "{:?}",
        gl.world().lines()
    );
    assert!(
        !p.files()
            .iter()
            .any(|f| f.starts_with(".config.toml.issued-"))
    );
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
fn stateless_list_query_encodes_the_hostname_tag() {
    let mut world = World::default();
    world.registration_enabled = false;
    let gl = FakeGitlab::start(world);
    let others: Vec<_> = [
        ("other1-shell", ["other1", "other", "shell"]),
        ("other1-batch", ["other1", "other", "batch"]),
        ("other2-shell", ["other2", "other", "shell"]),
    ]
    .iter()
    .map(|(d, tags)| gl.world().add_runner(d, tags, true))
    .collect();
    let before: Vec<_> = others
        .iter()
        .map(|id| gl.world().runners[id].clone())
        .collect();
    let p = stateless_prefix();
    // run() names node12 itself: build this command by hand
    let host = "x&tag_list=";
    let r = run_cmd({
        let mut c = command(&p);
        c.args(["--api-url", &gl.url(), "--prefix"])
            .arg(&p.dir)
            .args(["--hostname", host, "--wait", "5s", "--stateless"]);
        c
    });
    assert_code(&r, 0);
    let w = gl.world();
    let lists: Vec<_> = w
        .requests
        .iter()
        .filter(|q| q.path == "/runners/all")
        .collect();
    assert_eq!(lists.len(), 1, "{:?}", w.lines());
    assert_eq!(
        lists[0].query,
        "type=instance_type&tag_list=x%26tag_list%3D&per_page=100&page=1"
    );
    assert_eq!(lists[0].param("tag_list").unwrap(), host);
    assert!(
        !w.lines().iter().any(|l| l.starts_with("DELETE")),
        "{:?}",
        w.lines()
    );
    for (id, was) in others.iter().zip(&before) {
        let now = &w.runners[id];
        assert_eq!(
            (&now.token, &now.description, &now.tags),
            (&was.token, &was.description, &was.tags),
            "runner {id} of another host untouched"
        );
        assert!(
            !w.lines()
                .iter()
                .any(|l| l.contains(&format!("/runners/{id}"))),
            "no request about runner {id}: {:?}",
            w.lines()
        );
    }
    let mine: Vec<_> = w
        .runners
        .values()
        .filter(|r| r.tags.contains(&host.to_string()))
        .map(|r| r.description.clone())
        .collect();
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert_eq!(w.runners.len(), 5);
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
fn stateless_status_and_unregister_work_from_gitlab() {
    let gl = FakeGitlab::start(World::default());
    let p = stateless_prefix();
    assert_code(&run(&p, &gl, &["--stateless"]), 0);
    let before = p.snapshot("config.toml");
    let r = run(&p, &gl, &["--stateless", "status", "--json"]);
    assert_code(&r, 0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let v = &v["runners"];
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|row| row["valid"] == true && row["runner_id"].is_u64()),
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
