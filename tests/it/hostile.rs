// SPDX-License-Identifier: MIT
//! A compromised GitLab, or a man in the middle holding a CA this host
//! trusts: tokens that would inject keys into `config.toml`, ids out of
//! range, texts that drive a terminal or forge log lines, and listings that
//! never end. Each answer is a junk answer (65) that leaves every file as
//! it was, or is shown escaped and cut.

use crate::support::*;
use serde_json::json;
use std::time::Duration;

/// A token that, written raw into `token = "{shell}"`, turns the runner
/// into a custom executor running a shell as root.
const INJECTION: &str = "glrt-AAAA\"\n  executor = \"custom\"\n  [runners.custom]\n    prepare_exec = \"/bin/sh\"\n    prepare_args = [\"-c\",\"id > /tmp/owned\"]\n    note = \"";

/// Nothing of the injection is in any file of the prefix.
fn assert_not_injected(p: &Prefix) {
    for f in p.files() {
        let Ok(text) = std::fs::read_to_string(p.path(&f)) else {
            continue;
        };
        assert!(
            !text.contains("prepare_exec") && !text.contains("custom"),
            "{f}: {text}"
        );
    }
}

#[test]
fn an_injected_token_in_a_create_answer_is_never_stored_or_rendered() {
    // both workflows: a registration token (POST /runners) and an access
    // token (POST /user/runners)
    for admin in [REGISTRATION_TOKEN, ADMIN_PAT] {
        let gl = FakeGitlab::start(World::default());
        gl.world().next_tokens.push_back(INJECTION.into());
        let p = Prefix::standard(admin);
        let r = run(&p, &gl, &[]);
        assert_code(&r, 65);
        assert!(
            r.stderr
                .contains("with a token that is not a GitLab runner token (it holds '\"';"),
            "{r:?}"
        );
        assert!(
            r.stderr.contains("GitLab may have created a runner"),
            "the runner left behind is named: {r:?}"
        );
        assert!(!p.exists("config.toml"), "{:?}", p.files());
        assert_not_injected(&p);
        // nothing was asked of GitLab after the junk answer
        assert_eq!(gl.world().lines().len(), 1, "{:?}", gl.world().lines());
    }
}

#[test]
fn an_injected_token_in_a_reset_answer_leaves_every_file_as_it_was() {
    // heal by id: the state's token is dead, the access token resets it
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(ADMIN_PAT);
    assert_code(&run(&p, &gl, &[]), 0);
    let before = (p.snapshot("config.toml"), p.read("runner-data.json"));
    let id = p.state_id("shell");
    gl.world().rotate(id);
    gl.world().next_tokens.push_back(INJECTION.into());
    let r = run(&p, &gl, &[]);
    assert_code(&r, 65);
    assert!(
        r.stderr.contains(&format!(
            "POST /runners/{id}/reset_authentication_token: 201 with a token that is not a GitLab runner token"
        )) && r.stderr.contains(&format!("runner {id} remains in GitLab")),
        "{r:?}"
    );
    let after = (p.snapshot("config.toml"), p.read("runner-data.json"));
    assert_eq!(
        before, after,
        "config.toml untouched, the state's bytes as they were"
    );
    assert_not_injected(&p);

    // rotation with the runner's own token (reset by token)
    let gl = FakeGitlab::start({
        let mut w = World::default();
        w.token_interval = Some(3600);
        w
    });
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let before = p.snapshot("config.toml");
    gl.world().next_tokens.push_back(INJECTION.into());
    let r = run(&p, &gl, &["--rotate-before", "2h"]);
    assert_code(&r, 65);
    assert!(
        r.stderr.contains(
            "POST /runners/reset_authentication_token: 201 with a token that is not a GitLab runner token"
        ),
        "{r:?}"
    );
    assert_eq!(before, p.snapshot("config.toml"));
    assert_not_injected(&p);
}

#[test]
fn a_token_already_stored_by_an_older_version_is_refused_before_any_request() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write(
        "runner-data.json",
        &json!({"shell": {"id": 5, "token": INJECTION}, "batch": {}}).to_string(),
    );
    let before = p.snapshot("runner-data.json");
    let r = run(&p, &gl, &[]);
    assert_code(&r, 65);
    assert!(
        r.stderr.contains("runner-data.json: runner 'shell': 'token' is not a GitLab runner token (it holds '\"'; a runner token is letters, digits, '-', '_' and '.'); remove the entry's token to heal the runner"),
        "{r:?}"
    );
    assert!(gl.world().lines().is_empty());
    assert_eq!(before, p.snapshot("runner-data.json"));
    assert!(!p.exists("config.toml"));
}

#[test]
fn an_injected_token_in_config_toml_is_never_adopted() {
    // gitlab-runner writes what GitLab handed it when it rotates: TOML-escaped,
    // so it parses back to the injection
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let escaped = INJECTION
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    let shell = p.state_token("shell");
    let text = p.read("config.toml").replace(&shell, &escaped);
    p.write("config.toml", &text);
    gl.world().requests.clear();
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert!(
        r.stderr
            .contains("a runner's token is not a GitLab runner token (it holds '\"';"),
        "{r:?}"
    );
    assert!(verify_only(&gl.world().lines()), "{:?}", gl.world().lines());
    assert_not_injected(&p);
    assert!(config_tokens_valid(&p, &gl));
}

#[test]
fn ids_outside_an_int64_are_junk() {
    for (line, id) in [
        ("POST /runners", json!(9_223_372_036_854_775_808u64)),
        ("POST /runners", json!(0)),
    ] {
        let gl = FakeGitlab::start(World::default());
        let mut keys = serde_json::Map::new();
        keys.insert("id".into(), id.clone());
        gl.world().answer_patch.push((line.into(), keys));
        let p = Prefix::standard(REGISTRATION_TOKEN);
        let r = run(&p, &gl, &[]);
        assert_code(&r, 65);
        assert!(
            r.stderr.contains(&format!(
                "POST /runners: the answer's runner id {id} is not in 1..=9223372036854775807"
            )),
            "{r:?}"
        );
        assert!(!p.exists("config.toml"));
        // the pending-create record (crash safety) is all the state holds
        let state = p.state();
        assert!(
            state
                .as_object()
                .unwrap()
                .values()
                .all(|e| e.get("token").is_none() && e.get("id").is_none()),
            "{state}"
        );
    }
    // a state file holding one (an older version saved it) says so
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write(
        "runner-data.json",
        r#"{"shell": {"id": 9223372036854775808}, "batch": {}}"#,
    );
    let r = run(&p, &gl, &[]);
    assert_code(&r, 65);
    assert!(
        r.stderr
            .contains("runner 'shell': 'id' is not in 1..=9223372036854775807"),
        "{r:?}"
    );
}

#[test]
fn a_huge_malformed_expiry_is_shown_cut() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let mut keys = serde_json::Map::new();
    keys.insert(
        "token_expires_at".into(),
        json!(format!("\u{1b}]0;owned\u{7}{}", "9".repeat(100_000))),
    );
    gl.world()
        .answer_patch
        .push(("POST /runners/verify".into(), keys));
    let r = run(&p, &gl, &[]);
    assert_code(&r, 65);
    assert!(r.stderr.contains("is not an RFC 3339 time"), "{r:?}");
    assert!(r.stderr.len() < 2_000, "{} bytes", r.stderr.len());
    assert!(!r.stderr.contains('\u{1b}') && !r.stderr.contains('\u{7}'));
    assert!(r.stderr.contains("\\u{1b}]0;owned\\u{7}"), "{r:?}");
}

#[test]
fn runner_descriptions_cannot_drive_a_terminal_or_forge_log_lines() {
    // a runner of this host by its exact tag set (the original script's
    // rule), whatever its description, of a type no longer configured
    let gl = FakeGitlab::start(World::default());
    let evil = "evil\u{1b}]0;owned\u{7}\r\n<3>forged line";
    let id = gl.world().add_runner(evil, &[HOST, "node", "gpu"], false);
    let p = stateless_prefix();
    for args in [
        &["plan", "--stateless", "--prune"][..],
        &["--stateless", "--prune"],
    ] {
        let r = run(&p, &gl, args);
        assert!(r.code == 0 || r.code == 2, "{r:?}");
        let out = r.output();
        assert!(
            out.contains(&format!(
                "runner {id} ('evil\\u{{1b}}]0;owned\\u{{7}}\\r\\n<3>forged line')"
            )),
            "{r:?}"
        );
        for bad in ['\u{1b}', '\u{7}', '\r'] {
            assert!(!out.contains(bad), "{bad:?} in {r:?}");
        }
        assert!(!out.lines().any(|l| l.starts_with("<3>forged")), "{r:?}");
    }
    assert!(!gl.world().runners.contains_key(&id), "pruned");
}

#[test]
fn a_listing_that_never_ends_is_stopped_at_its_bound() {
    let gl = FakeGitlab::start({
        let mut w = World::default();
        w.endless_list = Some((100, format!("{HOST}-shell")));
        w
    });
    let p = stateless_prefix();
    let r = run(&p, &gl, &["--stateless"]);
    assert_code(&r, 65);
    assert!(
        r.stderr.contains(&format!(
            "GET /runners/all: GitLab lists more than 10000 runners tagged {HOST}: no host has that many; giving up"
        )),
        "{r:?}"
    );
    let lines = gl.world().lines();
    let lists = lines.iter().filter(|l| *l == "GET /runners/all").count();
    assert_eq!(lists, 101, "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.starts_with("GET /runners/1")),
        "no details read: {lines:?}"
    );
    assert!(!p.exists("config.toml"));
}

#[test]
fn a_page_larger_than_its_bound_is_junk_and_not_retried() {
    // 100 entries of 30 kB each: 3 MB, over the 2 MiB a page may have
    let gl = FakeGitlab::start({
        let mut w = World::default();
        w.endless_list = Some((100, format!("{HOST}-{}", "x".repeat(30_000))));
        w
    });
    let p = stateless_prefix();
    let r = run(&p, &gl, &["--stateless"]);
    assert_code(&r, 65);
    assert!(
        r.stderr
            .contains("GET /runners/all: the answer is larger than 2097152 bytes; not read"),
        "{r:?}"
    );
    let lines = gl.world().lines();
    assert_eq!(
        lines.iter().filter(|l| *l == "GET /runners/all").count(),
        1,
        "{lines:?}"
    );
}

#[test]
fn only_runners_that_could_be_this_hosts_are_read() {
    let gl = FakeGitlab::start(World::default());
    // another host's runners carrying this host's name as a tag
    for i in 0..150 {
        gl.world()
            .add_runner(&format!("login{i}-shell"), &[HOST, "shell"], true);
    }
    let p = stateless_prefix();
    let r = run(&p, &gl, &["--stateless"]);
    assert_code(&r, 0);
    let lines = gl.world().lines();
    let details = lines
        .iter()
        .filter(|l| l.starts_with("GET /runners/") && *l != "GET /runners/all")
        .count();
    assert_eq!(details, 0, "{lines:?}");
    assert_eq!(
        gl.world().runners.len(),
        152,
        "this host's two made, the others untouched"
    );

    // more candidates than a host can have: refused, none read
    let gl = FakeGitlab::start(World::default());
    for _ in 0..501 {
        gl.world().add_runner("pileup", &[HOST, "shell"], false);
    }
    let r = run(&p, &gl, &["--stateless"]);
    assert_code(&r, 65);
    assert!(
        r.stderr.contains("GitLab lists 501 runners that could be this host's by their description (more than 500): not reading them"),
        "{r:?}"
    );
    assert!(
        gl.world()
            .lines()
            .iter()
            .all(|l| l == "GET /runners/all" || l == "GET /personal_access_tokens/self"),
        "{:?}",
        gl.world().lines()
    );
}

#[test]
fn sigterm_stops_the_reading_at_once() {
    let gl = FakeGitlab::start({
        let mut w = World::default();
        w.latency = Some(Duration::from_millis(20));
        w
    });
    for _ in 0..400 {
        gl.world().add_runner("pileup", &[HOST, "shell"], false);
    }
    let p = stateless_prefix();
    let r = run_hooked(
        &p,
        &gl,
        &["--stateless"],
        &[(20, Phase::Arrival, Some("TERM"), Then::Continue)],
    );
    assert_code(&r, 143);
    assert!(r.stderr.contains("stopped by SIGTERM"), "{r:?}");
    let n = gl.world().lines().len();
    // the batch in flight finishes; no other starts
    assert!(n <= 20 + 8, "{n} requests after SIGTERM at the 21st");
    assert!(!p.exists("config.toml"));
}

#[test]
fn the_whole_run_ends_with_wait_and_timeout() {
    // 400 runners to read at 8 a time with 0.4 s each: 20 s, far past
    // --wait 2s and the tests' --timeout 5s
    let gl = FakeGitlab::start({
        let mut w = World::default();
        w.latency = Some(Duration::from_millis(400));
        w
    });
    for _ in 0..400 {
        gl.world().add_runner("pileup", &[HOST, "shell"], false);
    }
    let p = stateless_prefix();
    let r = run(&p, &gl, &["--stateless", "--wait", "2s"]);
    assert_code(&r, 69);
    // the read the end cut short, or one it kept from being sent
    assert!(
        r.stderr.contains("as another would pass --wait 2s")
            || r.stderr.contains(
                "not sent: the run's time is up (--wait 2s and --timeout 5s from its start)"
            ),
        "{r:?}"
    );
    // a bound on the requests, not a timing: far below the 400 reads
    assert!(
        gl.world().lines().len() < 200,
        "{}",
        gl.world().lines().len()
    );
}

#[test]
fn import_never_adopts_an_injected_token_from_config_toml() {
    // gitlab-runner wrote what a hostile GitLab handed it, TOML-escaped
    let gl = FakeGitlab::start(World::default());
    let escaped = INJECTION
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    let p = pat_prefix(ADMIN_PAT);
    std::fs::remove_file(p.path("config.template")).unwrap();
    p.write(
        "config.toml",
        &format!(
            "concurrent = 1\n\n[[runners]]\n  name = \"{HOST}-shell\"\n  url = \"{}\"\n  token = \"{escaped}\"\n  executor = \"shell\"\n",
            gl.url()
        ),
    );
    let before = p.snapshot("config.toml");
    let r = run(&p, &gl, &["import"]);
    assert_code(&r, 78);
    assert!(r.stderr.contains("nothing to import"), "{r:?}");
    assert_eq!(before, p.snapshot("config.toml"));
    assert!(
        r.stderr
            .contains("its token is not a GitLab runner token (it holds '\"'; a runner token is letters, digits, '-', '_' and '.'); left as it is"),
        "{r:?}"
    );
    if p.exists("runner-data.json") {
        assert!(
            !p.read("runner-data.json").contains("custom"),
            "{}",
            p.read("runner-data.json")
        );
    }
    // no request ever carried it
    assert!(
        gl.world()
            .requests
            .iter()
            .all(|q| !format!("{:?}", q).contains("prepare_exec")),
        "{:?}",
        gl.world().lines()
    );
}

/// `keys` as a JSON object for [`World::answer_patch`].
fn patch(keys: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    keys.as_object().unwrap().clone()
}

#[test]
fn an_expiry_past_year_9999_is_junk_and_never_stored() {
    // an offset carries it past what RFC 3339 and TOML can write
    for bad in ["9999-12-31T23:59:59-23:59", "0000-01-01T00:00:00+23:59"] {
        // in a create answer: the token is live, its expiry taken as unknown
        let gl = FakeGitlab::start(World::default());
        gl.world().answer_patch.push((
            "POST /runners".into(),
            patch(json!({"token_expires_at": bad})),
        ));
        let p = Prefix::standard(REGISTRATION_TOKEN);
        let r = run(&p, &gl, &[]);
        assert_code(&r, 0);
        assert!(
            r.stderr
                .contains("is not an RFC 3339 time; keeping the token, its expiry unknown"),
            "{r:?}"
        );
        assert_eq!(p.state()["shell"]["token_expires_at"], json!(null));
        // in a verify answer: that run stops, nothing is stored
        let state = p.read("runner-data.json");
        gl.world().answer_patch = vec![(
            "POST /runners/verify".into(),
            patch(json!({"token_expires_at": bad})),
        )];
        assert_code(&run(&p, &gl, &[]), 65);
        assert_eq!(state, p.read("runner-data.json"));
        // and once GitLab is healthy again, so is the node
        gl.world().answer_patch.clear();
        assert_code(&run(&p, &gl, &[]), 0);
    }
}

#[test]
fn runner_details_with_more_tags_than_gitlab_allows_are_junk() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(ADMIN_PAT);
    assert_code(&run(&p, &gl, &[]), 0);
    let before = p.snapshot("config.toml");
    let tags: Vec<String> = (0..10_000).map(|i| format!("t{i}")).collect();
    gl.world()
        .answer_patch
        .push(("GET /runners/".into(), patch(json!({"tag_list": tags}))));
    gl.world().requests.clear();
    // the runner's details are unreadable: nothing is decided on them, and
    // the tokens that verify are kept
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert_eq!(before, p.snapshot("config.toml"));
    assert!(writes(&gl).is_empty(), "{:?}", writes(&gl));
    // stateless decides on them: a junk answer there stops the run
    let p = stateless_prefix();
    let r = run(&p, &gl, &["--stateless"]);
    assert_code(&r, 65);
    assert!(
        r.stderr.contains("200 with an unreadable body")
            && r.stderr.contains("JSON of an unexpected shape"),
        "{r:?}"
    );
}

#[test]
fn another_hosts_description_cannot_forge_a_log_line() {
    // a copied state: GitLab shows the runner as another host's, with a
    // description and a tag that would each start a log line of their own
    let gl = FakeGitlab::start(World::default());
    let forged = "login43-shell\n2026-01-01T00:00:00.000Z INFO  [summary] 2 runners ok\n\u{1b}[2K";
    let id = gl
        .world()
        .add_runner(forged, &["login43", "t\nFORGED-TAG-LINE"], true);
    let token = gl.world().token_of(id);
    let p = pat_prefix(ADMIN_PAT);
    p.write(
        "runner-data.json",
        &json!({"shell": {"id": id, "token": token}, "batch": {}}).to_string(),
    );
    for args in [&["plan"][..], &[]] {
        let r = run(&p, &gl, args);
        assert!(r.code == 0 || r.code == 2, "{r:?}");
        let out = r.output();
        assert!(out.contains("login43-shell\\n2026-01-01"), "{r:?}");
        assert!(
            !out.lines()
                .any(|l| l.starts_with("2026-01-01T00:00:00.000Z")
                    || l.starts_with("FORGED-TAG-LINE")),
            "{r:?}"
        );
        assert!(!out.contains('\u{1b}'), "{r:?}");
    }
}

#[test]
fn a_listing_of_empty_or_backward_pages_ends() {
    let gl = FakeGitlab::start({
        let mut w = World::default();
        w.endless_list = Some((0, String::new()));
        w
    });
    let p = stateless_prefix();
    let r = run(&p, &gl, &["--stateless"]);
    assert_code(&r, 65);
    assert!(
        r.stderr
            .contains("GET /runners/all: page 101 says its next page is 102"),
        "{r:?}"
    );
    let lists = gl
        .world()
        .lines()
        .iter()
        .filter(|l| *l == "GET /runners/all")
        .count();
    assert_eq!(lists, 101);
}
