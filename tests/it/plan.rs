// SPDX-License-Identifier: MIT
//! What `plan` (`--dry-run`), `status` and `unregister` print and do.

use crate::support::*;

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
    let v = &v["runners"];
    assert_eq!(v[0]["type"], "batch");
    // one name per field across the JSON outputs (plan --json says runner_id)
    assert_eq!(v[0]["runner_id"], p.state_id("batch"));
    assert_eq!(v[0].get("id"), None);
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
    let writes: Vec<String> = gl.world().lines()[2..]
        .iter()
        .filter(|l| *l != "POST /runners/verify")
        .cloned()
        .collect();
    assert_eq!(writes, ["DELETE /runners", "DELETE /runners"]);
    assert_eq!(p.state(), serde_json::json!({"batch": {}, "shell": {}}));
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
