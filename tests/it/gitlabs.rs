// SPDX-License-Identifier: MIT
//! Several GitLab instances in one `config.toml`: the template's `url` of
//! each `[[runners]]` block decides its GitLab; another GitLab's
//! credentials live in `<prefix>/<authority>/`.

use crate::support::*;

/// The second GitLab's registration token: each GitLab its own.
const SECOND_TOKEN: &str = "GR1348941SecondSecond0123456";

/// `shell` and `batch` on the first GitLab, `gpu` on the second.
pub(crate) fn template(first: &str, second: &str) -> String {
    format!(
        r#"concurrent = 3

[[runners]]
  name = "{{hostname}}-shell"
  url = "{first}"
  id = {{shell.id}}
  token = "{{shell}}"
  executor = "shell"

[[runners]]
  name = "{{hostname}}-batch"
  url = "{first}"
  token = "{{batch.token}}"
  executor = "shell"

[[runners]]
  name = "{{hostname}}-gpu"
  url = "{second}"
  id = {{gpu.id}}
  token = "{{gpu}}"
  executor = "shell"
"#
    )
}

pub(crate) struct Two {
    pub(crate) first: FakeGitlab,
    pub(crate) second: FakeGitlab,
    pub(crate) p: Prefix,
}

/// The authority of a fake's url (`127.0.0.1:PORT`).
pub(crate) fn authority(gl: &FakeGitlab) -> String {
    gl.url().trim_start_matches("http://").to_string()
}

/// Two fake GitLabs, `shell` and `batch` on the first, `gpu` on the
/// second (its admin-token in `<prefix>/<authority>/`).
pub(crate) fn two() -> Two {
    let first = FakeGitlab::start(World::default());
    let mut world = World::default();
    world.instance_registration_token = SECOND_TOKEN.into();
    let second = FakeGitlab::start(world);
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write("config.template", &template(&first.url(), &second.url()));
    p.write(
        "runner-data.json",
        "{\"shell\": {}, \"batch\": {}, \"gpu\": {}}\n",
    );
    let dir = p.path(&authority(&second));
    std::fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o700);
    p.write(
        &format!("{}/admin-token", authority(&second)),
        &format!("{SECOND_TOKEN}\n"),
    );
    Two { first, second, p }
}

impl Two {
    /// The second GitLab answers every request 503 (down).
    pub(crate) fn second_down(&self) {
        self.second.world().fault(
            None,
            "/",
            FaultKind::Status {
                status: 503,
                retry_after: None,
            },
            10_000,
        );
    }

    /// Forget the requests both fakes have seen so far.
    pub(crate) fn clear_requests(&self) {
        self.first.world().requests.clear();
        self.second.world().requests.clear();
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        run(&self.p, &self.first, args)
    }

    pub(crate) fn gpu_access(&self) -> String {
        format!("{}/access-token", authority(&self.second))
    }
}

pub(crate) fn types_of(gl: &FakeGitlab) -> Vec<String> {
    let mut v: Vec<String> = gl
        .world()
        .runners
        .values()
        .map(|r| r.description.clone())
        .collect();
    v.sort();
    v
}

#[test]
fn a_first_run_creates_each_runner_on_its_own_gitlab() {
    let t = two();
    let r = t.run(&[]);
    assert_code(&r, 0);
    assert_eq!(
        types_of(&t.first),
        ["node12-batch", "node12-shell"],
        "{r:?}"
    );
    assert_eq!(types_of(&t.second), ["node12-gpu"], "{r:?}");
    // each with its own GitLab's registration token
    for q in t.second.world().requests.iter() {
        if q.line() == "POST /runners" {
            assert_eq!(q.params["token"], SECOND_TOKEN);
        }
    }
    let config = t.p.read("config.toml");
    assert!(config_tokens_valid_on(&config, "node12-gpu", &t.second));
    assert!(config_tokens_valid_on(&config, "node12-shell", &t.first));
    // the state records the second GitLab's entry; the first's as always
    let state = t.p.state();
    assert_eq!(state["gpu"]["gitlab"], t.second.url());
    assert!(state["shell"].get("gitlab").is_none());
    // the same ids on both GitLabs
    assert_eq!(state["gpu"]["id"], state["batch"]["id"]);
    assert_no_secrets(&r, &t.first);
    assert_no_secrets(&r, &t.second);

    // no change: verify calls only, nothing written
    let before = (
        t.p.snapshot("config.toml"),
        t.p.snapshot("runner-data.json"),
    );
    t.clear_requests();
    let r = t.run(&[]);
    assert_code(&r, 0);
    assert!(verify_only(&t.first.world().lines()), "{r:?}");
    assert!(verify_only(&t.second.world().lines()), "{r:?}");
    assert_eq!(t.first.world().lines().len(), 2);
    assert_eq!(t.second.world().lines().len(), 1);
    let after = (
        t.p.snapshot("config.toml"),
        t.p.snapshot("runner-data.json"),
    );
    assert_eq!(before, after);
}

/// Does `config` hold, in the block named `name`, a token `gl` knows?
fn config_tokens_valid_on(config: &str, name: &str, gl: &FakeGitlab) -> bool {
    let table: toml::Table = config.parse().unwrap();
    let runners = table["runners"].as_array().unwrap();
    let block = runners
        .iter()
        .find(|r| r["name"].as_str() == Some(name))
        .unwrap();
    let token = block["token"].as_str().unwrap();
    block["url"].as_str() == Some(&gl.url())
        && gl.world().runners.values().any(|r| r.token == token)
}

#[test]
fn a_dead_token_on_the_second_gitlab_is_healed_there() {
    let t = two();
    t.p.write(&t.gpu_access(), ADMIN_PAT);
    assert_code(&t.run(&[]), 0);
    let gpu = t.p.state_id("gpu");
    let old = t.p.state_token("gpu");
    t.second.world().runners.get_mut(&gpu).unwrap().token = "glrt-revokedrevokedrevoked".into();
    t.first.world().requests.clear();
    let r = t.run(&[]);
    assert_code(&r, 0);
    assert!(verify_only(&t.first.world().lines()), "{r:?}");
    assert!(
        t.second
            .world()
            .lines()
            .contains(&format!("POST /runners/{gpu}/reset_authentication_token")),
        "{r:?}"
    );
    assert_eq!(t.p.state_id("gpu"), gpu);
    assert_ne!(t.p.state_token("gpu"), old);
    assert!(config_tokens_valid_on(
        &t.p.read("config.toml"),
        "node12-gpu",
        &t.second
    ));
}

#[test]
fn one_gitlab_down_never_stops_the_other() {
    let t = two();
    assert_code(&t.run(&[]), 0);
    // the first's shell token dies, the second goes down
    let shell = t.p.state_id("shell");
    t.first.world().runners.remove(&shell);
    t.second_down();
    let gpu_block = |p: &Prefix| {
        let c = p.read("config.toml");
        c[c.find("node12-gpu").unwrap()..].to_string()
    };
    let before = gpu_block(&t.p);
    let r = t.run(&["--wait", "1s"]);
    assert_code(&r, 69);
    assert!(
        r.stderr
            .contains(&format!("GitLab {} unreachable", t.second.url())),
        "{r:?}"
    );
    // the first GitLab's runner was made again, and written
    assert_eq!(runners_of_type(&t.first, "shell"), 1, "{r:?}");
    assert!(config_tokens_valid_on(
        &t.p.read("config.toml"),
        "node12-shell",
        &t.first
    ));
    assert_eq!(gpu_block(&t.p), before);
    // --offline-ok: 0, with a warning naming it
    let r = t.run(&["--wait", "1s", "--offline-ok"]);
    assert_code(&r, 0);
    assert!(
        r.stderr.contains(&format!(
            "GitLab {} is unreachable; its runners in",
            t.second.url()
        )),
        "{r:?}"
    );
    assert_eq!(gpu_block(&t.p), before);
}

#[test]
fn a_type_moved_to_another_gitlab_is_a_new_runner_there() {
    let t = two();
    t.p.write("access-token", ADMIN_PAT);
    assert_code(&t.run(&[]), 0);
    let batch = t.p.state_id("batch");
    // batch's block now names the second GitLab
    let text = template(&t.first.url(), &t.second.url()).replacen(
        &format!(
            "name = \"{{hostname}}-batch\"\n  url = \"{}\"",
            t.first.url()
        ),
        &format!(
            "name = \"{{hostname}}-batch\"\n  url = \"{}\"",
            t.second.url()
        ),
        1,
    );
    t.p.write("config.template", &text);
    let r = t.run(&[]);
    assert_code(&r, 0);
    assert!(
        r.stderr.contains(&format!(
            "batch: its [[runners]] block now names {}, so this host makes a new batch runner there; its old runner {batch} may remain in {}",
            t.second.url(),
            t.first.url()
        )),
        "{r:?}"
    );
    assert_eq!(types_of(&t.second), ["node12-batch", "node12-gpu"]);
    assert_eq!(t.p.state()["batch"]["gitlab"], t.second.url());
    assert!(config_tokens_valid_on(
        &t.p.read("config.toml"),
        "node12-batch",
        &t.second
    ));
    // --prune deletes the old one on the first GitLab; the second needs
    // its own access token to list its runners, found before the first
    // GitLab is asked anything
    t.clear_requests();
    let r = t.run(&["--prune"]);
    assert_code(&r, 78);
    assert!(t.first.world().requests.is_empty(), "{r:?}");
    assert!(t.second.world().requests.is_empty(), "{r:?}");
    assert!(
        r.stderr.contains(&format!(
            "--prune needs an access-token (api scope) in {} to list and delete the runners of {}",
            path_str(&t.p.path(&authority(&t.second))),
            t.second.url()
        )),
        "{r:?}"
    );
    t.p.write(&t.gpu_access(), ADMIN_PAT);
    let r = t.run(&["--prune"]);
    assert_code(&r, 0);
    assert_eq!(types_of(&t.first), ["node12-shell"], "{r:?}");
    assert_eq!(types_of(&t.second), ["node12-batch", "node12-gpu"], "{r:?}");
}

#[test]
fn a_type_in_blocks_of_two_gitlabs_is_refused() {
    let t = two();
    let text = template(&t.first.url(), &t.second.url()).replace("{gpu}", "{shell}");
    t.p.write("config.template", &text);
    t.p.write("runner-data.json", "{\"shell\": {}, \"batch\": {}}\n");
    let r = t.run(&[]);
    assert_code(&r, 78);
    assert!(
        r.stderr
            .contains("runner type 'shell' is in [[runners]] blocks of two GitLabs"),
        "{r:?}"
    );
    assert!(t.first.world().requests.is_empty());
    assert!(t.second.world().requests.is_empty());
}

#[test]
fn the_second_gitlabs_directory_follows_the_trust_rules() {
    let t = two();
    let dir = t.p.path(&authority(&t.second));
    chmod(&dir, 0o777);
    let r = t.run(&[]);
    assert_code(&r, 77);
    assert!(
        r.stderr.contains(&format!("chmod go-w {}", dir.display())),
        "{r:?}"
    );
    assert!(t.first.world().requests.is_empty(), "{r:?}");
    chmod(&dir, 0o700);
    let token = dir.join("admin-token");
    chmod(&token, 0o644);
    let r = t.run(&[]);
    assert_code(&r, 77);
    assert!(r.stderr.contains(&path_str(&token)), "{r:?}");
    assert!(t.first.world().requests.is_empty(), "{r:?}");
    assert!(t.second.world().requests.is_empty(), "{r:?}");
}

#[test]
fn stateless_lists_each_gitlabs_runners_with_its_access_token() {
    let t = two();
    t.p.write("access-token", ADMIN_PAT);
    t.p.write(&t.gpu_access(), ADMIN_PAT);
    std::fs::remove_file(t.p.path("runner-data.json")).unwrap();
    let r = t.run(&["--stateless"]);
    assert_code(&r, 0);
    assert_eq!(
        types_of(&t.first),
        ["node12-batch", "node12-shell"],
        "{r:?}"
    );
    assert_eq!(types_of(&t.second), ["node12-gpu"], "{r:?}");
    assert!(!t.p.exists("runner-data.json"));
    let config = t.p.read("config.toml");
    assert!(config_tokens_valid_on(&config, "node12-gpu", &t.second));
    assert!(config_tokens_valid_on(&config, "node12-batch", &t.first));
    // again: the runners are found, none made
    let before = t.p.snapshot("config.toml");
    let r = t.run(&["--stateless"]);
    assert_code(&r, 0);
    assert_eq!(types_of(&t.second), ["node12-gpu"], "{r:?}");
    assert_eq!(t.p.snapshot("config.toml"), before);
    for gl in [&t.first, &t.second] {
        assert!(
            gl.world().lines().iter().any(|l| l == "GET /runners/all"),
            "{:?}",
            gl.world().lines()
        );
    }
}

#[test]
fn prune_keeps_each_gitlabs_runners_with_the_same_ids() {
    let t = two();
    t.p.write("access-token", ADMIN_PAT);
    t.p.write(&t.gpu_access(), ADMIN_PAT);
    assert_code(&t.run(&[]), 0);
    // the first GitLab's runner 100 and the second's are both held
    let (shell, gpu) = (t.p.state_id("shell"), t.p.state_id("gpu"));
    assert_eq!(shell.min(t.p.state_id("batch")), gpu);
    // a leftover of this host on the second GitLab
    let extra = t
        .second
        .world()
        .add_runner("node12-old", &["node12", "old"], false);
    let r = t.run(&["--prune"]);
    assert_code(&r, 0);
    assert_eq!(
        types_of(&t.first),
        ["node12-batch", "node12-shell"],
        "{r:?}"
    );
    assert_eq!(types_of(&t.second), ["node12-gpu"], "{r:?}");
    assert!(!t.second.world().runners.contains_key(&extra));
}

#[test]
fn plan_json_names_each_runners_gitlab() {
    let t = two();
    let r = t.run(&["plan", "--json"]);
    assert_code(&r, 2);
    assert!(t.first.world().requests.is_empty() || verify_only(&t.first.world().lines()));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect(&r.stdout);
    assert_eq!(
        v["gitlabs"],
        serde_json::json!([t.first.url(), t.second.url()])
    );
    let gitlab_of = |ty: &str| {
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == ty)
            .map(|c| c["gitlab"].as_str().unwrap().to_string())
    };
    assert_eq!(gitlab_of("shell"), Some(t.first.url()));
    assert_eq!(gitlab_of("gpu"), Some(t.second.url()));
    // the diff shows every GitLab's new runner
    let diff = v["config_diff"]["lines"].to_string();
    for ty in ["shell", "batch", "gpu"] {
        assert!(diff.contains(&format!("<new token for {ty}>")), "{diff}");
    }
    assert!(!t.p.exists("config.toml"));
    assert_code(&t.run(&[]), 0);
    let r = t.run(&["plan"]);
    assert_code(&r, 0);
    assert!(r.stdout.contains(&t.second.url()), "{r:?}");
}

#[test]
fn doctor_checks_each_gitlab_with_its_own_tokens() {
    let t = two();
    t.p.write(&t.gpu_access(), ADMIN_PAT);
    assert_code(&t.run(&[]), 0);
    t.clear_requests();
    let r = t.run(&["doctor"]);
    assert_code(&r, 0);
    let dir = path_str(&t.p.path(&authority(&t.second)));
    for want in [
        format!("\ngitlab {}\n", t.first.url()),
        format!("\ngitlab {}\n", t.second.url()),
        format!("token dir         {dir}: mode 0700"),
        format!("admin-token       {dir}/admin-token: mode 0600"),
        format!("access-token      {dir}/access-token: mode 0600"),
    ] {
        assert!(r.stdout.contains(&want), "{want}\n{}", r.stdout);
    }
    // the gpu runner's token is verified on the second GitLab only
    let gpu = t.p.state_token("gpu");
    let verified = |gl: &FakeGitlab| {
        gl.world()
            .requests
            .iter()
            .filter(|q| q.line() == "POST /runners/verify")
            .filter(|q| q.params.get("token").and_then(|v| v.as_str()) == Some(gpu.as_str()))
            .count()
    };
    assert_eq!(verified(&t.second), 1, "{r:?}");
    assert_eq!(verified(&t.first), 0, "{r:?}");
    // the second's access token is asked of the second GitLab
    assert!(
        r.stdout.contains(&format!(
            "access-token      {dir}/access-token: valid, scopes api"
        )),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("warn "), "{}", r.stdout);
    assert_no_secrets(&r, &t.first);
    assert_no_secrets(&r, &t.second);

    // its directory open to others: a failure in its section, exit 77
    chmod(&t.p.path(&authority(&t.second)), 0o777);
    let r = t.run(&["doctor"]);
    assert_code(&r, 77);
    assert!(
        r.stdout.contains(&format!("chmod go-w {dir}")),
        "{}",
        r.stdout
    );
}

#[test]
fn status_reports_each_gitlabs_runners_in_one_report() {
    let t = two();
    t.p.write(&t.gpu_access(), ADMIN_PAT);
    assert_code(&t.run(&[]), 0);
    t.clear_requests();
    let r = t.run(&["status"]);
    assert_code(&r, 0);
    let header = r.stdout.lines().next().unwrap();
    assert!(header.ends_with("DAYS LEFT  GITLAB"), "{r:?}");
    let line = |ty: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(ty))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("gpu").ends_with(&t.second.url()), "{r:?}");
    assert!(line("shell").ends_with(&t.first.url()), "{r:?}");
    // each token verified on its own GitLab, nothing written
    assert!(verify_only(&t.first.world().lines()), "{r:?}");
    let second = t.second.world().lines();
    assert!(second.contains(&"POST /runners/verify".to_string()));
    assert!(
        second
            .iter()
            .all(|l| l == "POST /runners/verify" || l.starts_with("GET ")),
        "{second:?}"
    );
    assert_no_secrets(&r, &t.first);
    assert_no_secrets(&r, &t.second);

    let r = t.run(&["status", "--json"]);
    assert_code(&r, 0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect(&r.stdout);
    assert_eq!(
        v["gitlabs"],
        serde_json::json!([t.first.url(), t.second.url()])
    );
    assert_eq!(gitlab_of_runner(&v, "gpu"), Some(t.second.url()));
    assert_eq!(gitlab_of_runner(&v, "shell"), Some(t.first.url()));
    assert_eq!(gitlab_of_runner(&v, "batch"), Some(t.first.url()));
    assert_eq!(v["runners"].as_array().unwrap().len(), 3);
    let access = &v["access_tokens"][0];
    assert_eq!(access["gitlab"], t.second.url(), "{v}");

    // the second GitLab's runner token dies: not valid, exit 77
    let gpu = t.p.state_id("gpu");
    t.second.world().runners.get_mut(&gpu).unwrap().token = "glrt-revokedrevokedrevoked".into();
    let r = t.run(&["status", "--json"]);
    assert_code(&r, 77);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect(&r.stdout);
    let valid = |ty: &str| {
        v["runners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == ty)
            .unwrap()["valid"]
            .clone()
    };
    assert_eq!(valid("gpu"), false);
    assert_eq!(valid("shell"), true);
}

#[test]
fn status_names_an_unreachable_gitlab_and_reports_the_others() {
    let t = two();
    assert_code(&t.run(&[]), 0);
    t.second_down();
    let r = t.run(&["status", "--json", "--wait", "1s"]);
    assert_code(&r, 69);
    assert!(
        r.stderr
            .contains(&format!("GitLab {} unreachable", t.second.url())),
        "{r:?}"
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect(&r.stdout);
    assert_eq!(gitlab_of_runner(&v, "shell"), Some(t.first.url()));
    assert_eq!(gitlab_of_runner(&v, "gpu"), None);
}

#[test]
fn status_with_one_gitlab_has_no_gitlab_field_or_column() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let r = run(&p, &gl, &["status"]);
    assert_code(&r, 0);
    assert!(!r.stdout.contains("GITLAB"), "{r:?}");
    let r = run(&p, &gl, &["status", "--json"]);
    assert_code(&r, 0);
    assert!(!r.stdout.contains("gitlab"), "{r:?}");
}

#[test]
fn metrics_carry_a_gitlab_label_with_several_gitlabs() {
    let t = two();
    t.p.write(&t.gpu_access(), ADMIN_PAT);
    t.second.world().pats.get_mut(ADMIN_PAT).unwrap().expires_at = Some("2099-01-01".into());
    let dir = t.p.path("node-exporter");
    std::fs::create_dir(&dir).unwrap();
    let file = path_str(&dir.join("gitlab-runner-auth.prom"));
    for cmd in [None, Some("status")] {
        let mut args: Vec<&str> = cmd.into_iter().collect();
        args.extend(["--metrics-file", &file]);
        let r = t.run(&args);
        assert_code(&r, 0);
        let text = std::fs::read_to_string(&file).unwrap();
        let (first, second) = (t.first.url(), t.second.url());
        let gpu = t.p.state_id("gpu");
        for series in [
            format!(
                "gitlab_runner_auth_runner_info{{type=\"gpu\",gitlab=\"{second}\",runner_id=\"{gpu}\"}} 1"
            ),
            format!("gitlab_runner_auth_runner_token_valid{{type=\"gpu\",gitlab=\"{second}\"}} 1"),
            format!("gitlab_runner_auth_runner_token_valid{{type=\"shell\",gitlab=\"{first}\"}} 1"),
        ] {
            assert!(text.lines().any(|l| l == series), "{series}\n{text}");
        }
        // the second GitLab's access token: its own gitlab label
        assert!(
            text.lines().any(|l| l
                .starts_with("gitlab_runner_auth_access_token_expiry_timestamp_seconds{")
                && l.contains(&format!("role=\"access-token\",gitlab=\"{second}\"}}"))),
            "{text}"
        );
    }
}

#[test]
fn unregister_deletes_each_gitlabs_runners_there() {
    let t = two();
    t.p.write("access-token", ADMIN_PAT);
    t.p.write(&t.gpu_access(), ADMIN_PAT);
    assert_code(&t.run(&[]), 0);
    // another host's runner with the same id as nothing of ours: kept
    let other = t
        .second
        .world()
        .add_runner("node99-gpu", &["node99", "gpu"], false);
    // --dry-run: both GitLabs' deletions shown, nothing done
    let r = t.run(&["unregister", "--dry-run", "--json"]);
    assert_code(&r, 2);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect(&r.stdout);
    let deletes: Vec<(String, u64)> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "delete")
        .map(|c| {
            (
                c["gitlab"].as_str().unwrap().to_string(),
                c["runner_id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(deletes.len(), 3, "{v}");
    assert!(
        deletes.contains(&(t.second.url(), t.p.state_id("gpu"))),
        "{v}"
    );
    assert_eq!(types_of(&t.second), ["node12-gpu", "node99-gpu"]);

    let r = t.run(&["unregister"]);
    assert_code(&r, 0);
    assert!(types_of(&t.first).is_empty(), "{r:?}");
    assert_eq!(types_of(&t.second), ["node99-gpu"], "{r:?}");
    assert!(t.second.world().runners.contains_key(&other));
    // every GitLab's entry cleared; the second's still names its GitLab
    let state = t.p.state();
    for ty in ["shell", "batch", "gpu"] {
        assert!(state[ty].get("id").is_none(), "{state}");
        assert!(state[ty].get("token").is_none(), "{state}");
    }
    assert_eq!(state["gpu"]["gitlab"], t.second.url());
    assert_no_secrets(&r, &t.first);
    assert_no_secrets(&r, &t.second);
}

#[test]
fn unregister_goes_on_when_one_gitlab_is_down() {
    let t = two();
    assert_code(&t.run(&[]), 0);
    let gpu = t.p.state_id("gpu");
    t.second_down();
    let r = t.run(&["unregister", "--wait", "1s"]);
    assert_code(&r, 69);
    assert!(
        r.stderr
            .contains(&format!("GitLab {} unreachable", t.second.url())),
        "{r:?}"
    );
    // the first GitLab's runners deleted and cleared; the second's kept
    assert!(types_of(&t.first).is_empty(), "{r:?}");
    assert_eq!(types_of(&t.second), ["node12-gpu"]);
    let state = t.p.state();
    assert!(state["shell"].get("token").is_none(), "{state}");
    assert_eq!(t.p.state_id("gpu"), gpu);
    // once it is back, unregister finishes
    t.second.world().faults.clear();
    let r = t.run(&["unregister"]);
    assert_code(&r, 0);
    assert!(types_of(&t.second).is_empty(), "{r:?}");
}

/// The runner of `ty` in a `--json` report, and its `gitlab`.
fn gitlab_of_runner(v: &serde_json::Value, ty: &str) -> Option<String> {
    v["runners"].as_array()?.iter().find(|r| r["type"] == ty)?["gitlab"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn import_adopts_the_runners_of_every_gitlab_whose_credentials_are_here() {
    // a host registered by hand on two GitLabs: shell and batch on the
    // first, gpu on the second, the same ids on both
    let t = two();
    let (shell, batch, gpu) = {
        let (mut a, mut b) = (t.first.world(), t.second.world());
        let shell = a.add_runner("node12-shell", &["node12", "node", "shell"], true);
        let batch = a.add_runner("node12-batch", &["node12", "node", "batch"], true);
        let gpu = b.add_runner("node12-gpu", &["node12", "node", "gpu"], true);
        (
            (shell, a.token_of(shell)),
            (batch, a.token_of(batch)),
            (gpu, b.token_of(gpu)),
        )
    };
    assert_eq!(shell.0, gpu.0, "the same ids on both GitLabs");
    let config = format!(
        "concurrent = 3\n\n[[runners]]\n  name = \"shell\"\n  url = \"{a}\"\n  id = {}\n  token = \"{}\"\n  executor = \"shell\"\n\n[[runners]]\n  name = \"batch\"\n  url = \"{a}\"\n  token = \"{}\"\n  executor = \"shell\"\n\n[[runners]]\n  name = \"gpu\"\n  url = \"{b}\"\n  id = {}\n  token = \"{}\"\n  executor = \"shell\"\n",
        shell.0,
        shell.1,
        batch.1,
        gpu.0,
        gpu.1,
        a = t.first.url(),
        b = t.second.url()
    );
    for f in ["config.template", "runner-data.json"] {
        std::fs::remove_file(t.p.path(f)).unwrap();
    }
    t.p.write("access-token", ADMIN_PAT);
    t.p.write(&t.gpu_access(), ADMIN_PAT);
    t.p.write("config.toml", &config);
    let before = t.p.snapshot("config.toml");
    let r = t.run(&["import"]);
    assert_code(&r, 0);
    let state = t.p.state();
    assert_eq!(state["gpu"]["gitlab"], t.second.url(), "{state}");
    assert!(state["shell"].get("gitlab").is_none(), "{state}");
    assert_eq!(state["gpu"]["id"], gpu.0);
    // each token verified on its own GitLab only
    let verified = |gl: &FakeGitlab| {
        gl.world()
            .requests
            .iter()
            .filter(|q| q.line() == "POST /runners/verify")
            .map(|q| q.params["token"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert!(!verified(&t.first).contains(&gpu.1));
    assert_eq!(verified(&t.second), vec![gpu.1.clone()]);
    // the start after it: no create, no write on either, config.toml as it was
    for gl in [&t.first, &t.second] {
        gl.world().requests.clear();
    }
    let r = t.run(&[]);
    assert_code(&r, 0);
    assert!(
        writes(&t.first).is_empty() && writes(&t.second).is_empty(),
        "{r:?}"
    );
    assert_eq!(before.0, t.p.snapshot("config.toml").0);

    // without the second GitLab's credentials: named, left unmanaged
    std::fs::remove_dir_all(t.p.path(&authority(&t.second))).unwrap();
    for f in ["config.template", "runner-data.json"] {
        std::fs::remove_file(t.p.path(f)).unwrap();
    }
    let r = t.run(&["import", "--dry-run"]);
    assert_code(&r, 0);
    assert!(
        r.stderr.contains(&format!(
            "is another GitLab than --api-url ({}): to import it, create {} (0700) holding that GitLab's admin-token and access-token (0600), then run import again",
            t.first.url(),
            t.p.path(&authority(&t.second)).display()
        )),
        "{r:?}"
    );
}

/// `--spread` with two GitLabs: one delay for the run (one line), nothing
/// sent to either GitLab before it, and each GitLab's `--wait` and end
/// moved by it (with `--wait 0s --timeout 1s`, a delay over 1.5 s taken
/// from them would leave no time for a request): runs until one draws
/// more than 1.5 s of 10 s (8 runs all draw less once in 4 million).
#[test]
fn a_spread_holds_back_both_gitlabs_once() {
    let mut past_timeout = false;
    for _ in 0..8 {
        let t = two();
        let t0 = std::time::Instant::now();
        let r = t.run(&["--spread", "10s", "--wait", "0s", "--timeout", "1s"]);
        assert_code(&r, 0);
        assert_eq!(
            r.stderr.matches("spreading the cluster's starts").count(),
            1,
            "{r:?}"
        );
        let d = crate::load::spread_delay(&r.stderr);
        for gl in [&t.first, &t.second] {
            let w = gl.world();
            let first = w.requests.first().expect("a request");
            assert!(
                first.at.duration_since(t0) + std::time::Duration::from_millis(50) >= d,
                "{:?} < {d:?}",
                first.at.duration_since(t0)
            );
        }
        assert_eq!(types_of(&t.second), ["node12-gpu"], "{r:?}");
        if d > std::time::Duration::from_millis(1500) {
            past_timeout = true;
            break;
        }
    }
    assert!(past_timeout, "no delay past 1.5 s in 8 rounds");
}
