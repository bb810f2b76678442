// SPDX-License-Identifier: MIT
//! Ownership: a host touches only its own runners in GitLab (description
//! `<host>-<type>` with both tags, or the original script's exact tag set).
//! Each test is an attack that once worked: a host named like another's
//! cluster, a host whose name prefixes another's, a prefix copied from
//! another node (its runner details unreadable, or the copy unregistered),
//! a runner that lost its hostname tag, a state naming another team's
//! runner; and a template that renders to invalid TOML, found only after
//! GitLab had issued a token.
//!
//! Also what a host does to its own runners: drifted tags and description
//! restored (tags added by hand kept), `--prune` (bounded by `--max-delete`, every page of the list),
//! group runners kept to their group.

use crate::support::*;

/// (id, token, description, tags) of every runner described `<host>-…`.
fn runners_of(gl: &FakeGitlab, host: &str) -> Vec<(u64, String, String, Vec<String>)> {
    gl.world()
        .runners
        .values()
        .filter(|r| r.description.starts_with(&format!("{host}-")))
        .map(|r| (r.id, r.token.clone(), r.description.clone(), r.tags.clone()))
        .collect()
}

/// login42's prefix (access token included) after its first run.
fn login42(gl: &FakeGitlab) -> Prefix {
    let p42 = pat_prefix(ADMIN_PAT);
    assert_code(&run_host(&p42, &gl.url(), "login42", &[]), 0);
    p42
}

/// Every file of a prefix, as a node image copies them.
const PREFIX_FILES: [&str; 5] = [
    "admin-token",
    "access-token",
    "config.template",
    "runner-data.json",
    "config.toml",
];

/// A new prefix holding a copy of `files` of `from` (`cp -a` of a node
/// image).
fn copied(from: &Prefix, files: &[&str]) -> Prefix {
    let p = Prefix::new();
    for f in files {
        p.write(f, &from.read(f));
    }
    p
}

/// A prefix copied from login42 whose runner details cannot be read (403)
/// never resets login42's tokens, even when they are due for rotation.
#[test]
fn a_copied_prefix_whose_runner_details_cannot_be_read_never_resets_the_other_hosts_tokens() {
    let mut world = World::default();
    world.token_interval = Some(30 * 86_400);
    let gl = FakeGitlab::start(world);
    let p42 = login42(&gl);
    let theirs: Vec<(u64, String)> = gl
        .world()
        .runners
        .values()
        .map(|r| (r.id, r.token.clone()))
        .collect();
    let p43 = copied(&p42, &PREFIX_FILES);
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

/// A description naming another host outweighs the exact-tag-set rule:
/// login42's shell runner whose `login42` tag was removed in the UI (tags
/// `login, shell`) is never taken over by host `login` in stateless mode
/// (reset by id, login42's token dead, and used as login's own).
#[test]
fn login_never_takes_over_login42s_runner_that_lost_its_hostname_tag() {
    let gl = FakeGitlab::start(World::default());
    let p42 = login42(&gl);
    let id = p42.state_id("shell");
    gl.world().runners.get_mut(&id).unwrap().tags = vec!["login".into(), "shell".into()];
    let before = gl.world().runners[&id].clone();
    let p = pat_prefix(ADMIN_PAT);
    gl.world().requests.clear();
    let r = run_host(&p, &gl.url(), "login", &["--stateless"]);
    let lines = gl.world().lines();
    assert_eq!(
        gl.world().runners.get(&id),
        Some(&before),
        "login touched login42-shell ({id}): {lines:?}\n{r:?}"
    );
}

/// `unregister` on a prefix copied from login42 never deletes login42's
/// runners (deleting by token, with no ownership check, once did when there
/// was no access token or the entry had no id); without an access token
/// the run says it cannot check.
#[test]
fn unregister_on_a_copied_prefix_never_deletes_the_other_hosts_runners() {
    let gl = FakeGitlab::start(World::default());
    let p42 = login42(&gl);
    let p43 = copied(
        &p42,
        &[
            "admin-token",
            "access-token",
            "config.template",
            "runner-data.json",
        ],
    );
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

#[test]
fn stateless_login_never_takes_login42s_runners() {
    let gl = FakeGitlab::start(World::default());
    let p42 = pat_prefix(ADMIN_PAT);
    assert_code(&run_host(&p42, &gl.url(), "login42", &["--stateless"]), 0);
    let theirs = runners_of(&gl, "login42");
    assert_eq!(theirs.len(), 2);
    assert!(
        theirs.iter().all(|r| r.3.contains(&"login".to_string())),
        "{theirs:?}"
    );
    let p = pat_prefix(ADMIN_PAT);
    gl.world().requests.clear();
    let r = run_host(&p, &gl.url(), "login", &["--stateless"]);
    assert_code(&r, 0);
    assert_eq!(
        runners_of(&gl, "login42"),
        theirs,
        "login42's runners untouched"
    );
    for (id, ..) in &theirs {
        assert!(
            writes(&gl)
                .iter()
                .all(|l| !l.contains(&format!("/runners/{id}"))),
            "{:?}",
            writes(&gl)
        );
    }
    assert_eq!(
        writes(&gl),
        vec!["POST /user/runners", "POST /user/runners"],
        "login creates its own"
    );
    assert_eq!(runners_of(&gl, "login").len(), 2);
    // both hosts keep working, with verify calls only
    for (prefix, host) in [(&p42, "login42"), (&p, "login")] {
        gl.world().requests.clear();
        assert_code(&run_host(prefix, &gl.url(), host, &["--stateless"]), 0);
        assert!(writes(&gl).is_empty(), "{host}: {:?}", writes(&gl));
    }
    // unregister on login deletes login's two runners, nothing of login42's
    let r = run_host(&p, &gl.url(), "login", &["--stateless", "unregister"]);
    assert_code(&r, 0);
    assert_eq!(runners_of(&gl, "login42"), theirs);
    assert_eq!(gl.world().runners.len(), 2, "{r:?}");
}

#[test]
fn prune_on_login_never_deletes_login_gpus_runners() {
    let gl = FakeGitlab::start(World::default());
    let gpu = pat_prefix(ADMIN_PAT);
    assert_code(
        &run_host(&gpu, &gl.url(), "login-gpu", &["--tag", "login"]),
        0,
    );
    let theirs = runners_of(&gl, "login-gpu");
    assert_eq!(theirs.len(), 2);
    let p = pat_prefix(ADMIN_PAT);
    assert_code(&run_host(&p, &gl.url(), "login", &["--tag", "login"]), 0);
    // one runner of login's that is no longer configured
    let old = gl.world().add_runner("login-gpu", &["login", "gpu"], false);
    gl.world().requests.clear();
    let r = run_host(&p, &gl.url(), "login", &["--tag", "login", "--prune"]);
    assert_code(&r, 0);
    assert_eq!(writes(&gl), vec![format!("DELETE /runners/{old}")], "{r:?}");
    assert_eq!(runners_of(&gl, "login-gpu"), theirs);
}

#[test]
fn a_prefix_copied_from_another_node_makes_its_own_runners_without_flapping() {
    let gl = FakeGitlab::start(World::default());
    let p42 = login42(&gl);
    let theirs = runners_of(&gl, "login42");
    // cp -a login42's prefix to login43 (a node image)
    let p43 = copied(&p42, &PREFIX_FILES);
    gl.world().requests.clear();
    let r = run_host(&p43, &gl.url(), "login43", &[]);
    assert_code(&r, 0);
    assert!(
        r.stderr.contains("which GitLab shows as another host's (copied from another node?); leaving it alone and creating login43's own"),
        "{r:?}"
    );
    assert_eq!(
        runners_of(&gl, "login42"),
        theirs,
        "login42's runners untouched"
    );
    assert_eq!(
        writes(&gl),
        vec!["POST /user/runners", "POST /user/runners"]
    );
    let mine = runners_of(&gl, "login43");
    assert_eq!(mine.len(), 2);
    for ty in ["shell", "batch"] {
        let id = p43.state_id(ty);
        assert!(mine.iter().any(|r| r.0 == id), "{ty}");
        assert!(!p43.read("config.toml").contains(&p42.state_token(ty)));
    }
    // and both keep their own, run after run
    for _ in 0..2 {
        for (prefix, host) in [(&p42, "login42"), (&p43, "login43")] {
            gl.world().requests.clear();
            let r = run_host(prefix, &gl.url(), host, &[]);
            assert_code(&r, 0);
            assert!(writes(&gl).is_empty(), "{host}: {:?} {r:?}", writes(&gl));
        }
    }
    assert_eq!(runners_of(&gl, "login42"), theirs);
    assert_eq!(runners_of(&gl, "login43"), mine);
}

#[test]
fn a_state_naming_another_teams_runner_is_never_healed_or_retagged() {
    let gl = FakeGitlab::start(World::default());
    let theirs = gl
        .world()
        .add_runner("team-x-gpu", &["team-x", "gpu", "shell"], true);
    let before = gl.world().runners[&theirs].clone();
    let p = pat_prefix(ADMIN_PAT);
    p.write(
        "runner-data.json",
        &format!(r#"{{"shell": {{"id": {theirs}, "token": "glrt-not-valid-any-more-0000"}}, "batch": {{}}}}"#),
    );
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert_eq!(
        gl.world().runners[&theirs],
        before,
        "not reset, renamed or re-tagged"
    );
    assert!(
        writes(&gl).iter().all(|l| !l.contains(&theirs.to_string())),
        "{:?}",
        writes(&gl)
    );
    assert_ne!(p.state_id("shell"), theirs);
    assert!(r.stderr.contains("another host's"), "{r:?}");
    // unregister leaves it alone too
    p.write(
        "runner-data.json",
        &format!(r#"{{"shell": {{"id": {theirs}}}, "batch": {{}}}}"#),
    );
    let r = run(&p, &gl, &["unregister"]);
    assert_code(&r, 0);
    assert!(gl.world().runners.contains_key(&theirs), "{r:?}");
    assert!(r.stderr.contains("is another host's: not deleted"), "{r:?}");
}

#[test]
fn a_template_that_renders_to_invalid_toml_stops_before_any_request() {
    let gl = FakeGitlab::start(World::default());
    let bad = TEMPLATE.replace("token = \"{shell}\"", "token = {shell}");
    for args in [&[][..], &["--stateless"][..]] {
        let p = pat_prefix(ADMIN_PAT);
        p.write("config.template", &bad);
        let r = run(&p, &gl, args);
        assert_code(&r, 65);
        assert!(
            r.stderr.contains("renders to invalid TOML (line 7, column"),
            "{r:?}"
        );
        assert!(gl.world().requests.is_empty(), "{:?}", gl.world().lines());
        assert!(!p.exists("runner-data.json") && !p.exists("config.toml"));
    }
    // a stateless host with runners: no reset on every start
    let p = pat_prefix(ADMIN_PAT);
    assert_code(&run(&p, &gl, &["--stateless"]), 0);
    p.write("config.template", &bad);
    gl.world().requests.clear();
    assert_code(&run(&p, &gl, &["--stateless"]), 65);
    assert!(gl.world().requests.is_empty());
}

#[test]
fn a_runner_url_that_is_not_the_api_host_is_warned_about() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write(
        "config.template",
        &TEMPLATE.replacen("http://127.0.0.1", "https://evil.example.net/", 1),
    );
    point_at(&p, &gl.url());
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert!(
        r.stderr.contains(&format!("runner 'node12-shell' has url https://evil.example.net/, not the GitLab of --api-url ({}): gitlab-runner will send its token to https://evil.example.net:443", gl.url())),
        "{r:?}"
    );
    assert_eq!(r.stderr.matches("not the GitLab of --api-url").count(), 1);
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
        // tags drifted (still this host's by its description and tags):
        // `node` removed, `oops` added by hand (kept: not a tag this host sets)
        let r = w.runners.get_mut(&id).unwrap();
        r.tags = vec!["node12".into(), "shell".into(), "oops".into()];
        // renamed (still this host's by its exact tag set)
        w.runners.get_mut(&batch).unwrap().description = "renamed".into();
        w.requests.clear();
    }
    let r = run(&p, &gl, &["plan"]);
    assert_code(&r, 2);
    assert!(r.stdout.contains(&format!("shell (runner {id}): would update description and tags on GitLab: 'node12-shell' [node12,shell,oops] -> 'node12-shell' [node12,node,shell,oops]")), "{r:?}");
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
    assert_eq!(w.runners[&id].tags, vec!["node12", "node", "shell", "oops"]);
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
fn a_runner_url_with_another_scheme_or_port_is_not_the_api_url() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    point_at(&p, &gl.url());
    let other_port = "http://127.0.0.1:1";
    let plain = "http://gitlab.example.com";
    let text = p.read("config.template");
    let text = text.replacen(&gl.url(), other_port, 1);
    let text = text.replacen(&gl.url(), plain, 1);
    p.write("config.template", &text);
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    let t = path_str(&p.path("config.template"));
    for want in [
        format!(
            "{t}: runner 'node12-shell' has url {other_port}, not the GitLab of --api-url ({}): gitlab-runner will send its token to http://127.0.0.1:1",
            gl.url()
        ),
        format!(
            "{t}: runner 'node12-batch' has url {plain}, plain http:// to gitlab.example.com: gitlab-runner sends its token unencrypted"
        ),
    ] {
        assert_eq!(r.stderr.matches(&want).count(), 1, "{want}\n{r:?}");
    }
    // doctor: the other port is a warning, plain http a failure
    let root = path_str(&p.path("root"));
    let r = run(&p, &gl, &["doctor", "--sysroot", &root]);
    assert_code(&r, 78);
    assert!(
        r.stdout.contains(&format!(
            "  fail  runner url        {t}: runner 'node12-batch' has url {plain}, plain http:// to gitlab.example.com: gitlab-runner sends its token unencrypted\n        fix: use https:// in that [[runners]] url of the template\n"
        )),
        "{r:?}"
    );
    assert!(
        r.stdout.contains(&format!(
            "  warn  runner url        {t}: runner 'node12-shell' has url {other_port}, not the GitLab"
        )),
        "{r:?}"
    );
}
