// SPDX-License-Identifier: MIT
//! The scenario matrix: every scenario against every GitLab version profile
//! (`tests/support/profiles.rs`: 13.12 … 19.x and GitLab.com), one test a
//! profile × scenario (`profiles::v17_11::rotation`), so the harness runs
//! them in parallel, each against its own fake. Where a version lacks a
//! feature the test asserts the documented fallback. Last, the README's
//! version table is checked against the profiles.

use crate::support::profiles::{PROFILES, Profile, Registration, profile};
use crate::support::*;
use gitlab_runner_auth::secret::mask;

/// The fake as GitLab `p`.
fn start(p: &Profile) -> FakeGitlab {
    FakeGitlab::start(World::profile(p))
}

/// Run the tool with the profile's options (group runners on GitLab.com).
fn go(q: &Prefix, gl: &FakeGitlab, p: &Profile, args: &[&str]) -> Run {
    let all: Vec<&str> = p.args().iter().chain(args).copied().collect();
    run(q, gl, &all)
}

/// A first run that succeeds: the profile's admin token, an access token
/// when `access`.
fn first(p: &Profile, gl: &FakeGitlab, access: bool) -> Prefix {
    let q = if access {
        pat_prefix(p.admin())
    } else {
        Prefix::standard(p.admin())
    };
    let r = go(&q, gl, p, &[]);
    assert_code(&r, 0);
    assert_no_secrets(&r, gl);
    gl.world().requests.clear();
    q
}

/// Whether the state holds an expiry for `ty`.
fn has_expiry(q: &Prefix, ty: &str) -> bool {
    q.state()[ty]
        .get("token_expires_at")
        .and_then(|v| v.as_str())
        .is_some_and(|s| !s.is_empty())
}

fn count(lines: &[String], line: &str) -> usize {
    lines.iter().filter(|l| *l == line).count()
}

fn first_run_created(p: &Profile) {
    let gl = start(p);
    gl.world().token_interval = Some(30 * 86_400);
    let q = Prefix::standard(ADMIN_PAT);
    let r = go(&q, &gl, p, &[]);
    assert_no_secrets(&r, &gl);
    if !p.user_runners {
        assert_code(&r, 78);
        assert!(
            r.stderr
                .contains("this GitLab has no POST /user/runners (it came in 15.11)"),
            "{r:?}"
        );
        assert!(!q.exists("config.toml"));
        return;
    }
    assert_code(&r, 0);
    assert_eq!(count(&gl.world().lines(), "POST /user/runners"), 2);
    for ty in ["shell", "batch"] {
        let t = q.state_token(ty);
        assert!(p.issued_form(&t, true), "{ty}: {t}");
        assert_eq!(has_expiry(&q, ty), p.expiry, "{ty}: {}", q.state());
        let w = gl.world();
        assert_eq!(w.runners[&q.state_id(ty)].runner_type, p.runner_type());
    }
    assert!(config_tokens_valid(&q, &gl));
}

fn first_run_registered(p: &Profile) {
    let gl = start(p);
    let q = Prefix::standard(REGISTRATION_TOKEN);
    let r = go(&q, &gl, p, &[]);
    assert_no_secrets(&r, &gl);
    let disabled = matches!(p.registration, Registration::Disabled { .. });
    if let Registration::Disabled { setting } = p.registration {
        assert_code(&r, 78);
        assert!(
            r.stderr
                .contains("registration tokens are disabled on this GitLab"),
            "{r:?}"
        );
        assert_eq!(gl.world().lines(), ["POST /runners"]);
        if !setting {
            return;
        }
        // the admin turns `allow_runner_registration_token` back on
        gl.world().registration_enabled = true;
    }
    let r = go(&q, &gl, p, &[]);
    assert_code(&r, 0);
    assert_no_secrets(&r, &gl);
    let tried = usize::from(disabled);
    assert_eq!(count(&gl.world().lines(), "POST /runners"), 2 + tried);
    for ty in ["shell", "batch"] {
        let t = q.state_token(ty);
        assert!(p.issued_form(&t, false), "{ty}: {t}");
    }
    assert!(config_tokens_valid(&q, &gl));
}

fn no_change(p: &Profile) {
    let gl = start(p);
    let q = first(p, &gl, false);
    let before = (q.snapshot("config.toml"), q.snapshot("runner-data.json"));
    let r = go(&q, &gl, p, &[]);
    assert_code(&r, 0);
    assert!(verify_only(&gl.world().lines()), "{:?}", gl.world().lines());
    assert_eq!(
        (q.snapshot("config.toml"), q.snapshot("runner-data.json")),
        before
    );
    // GitLab 16.0+ records the host's system_id as a runner manager
    for r in gl.world().runners.values() {
        let host = r.managers.iter().any(|m| m.starts_with(['s', 'r']));
        assert_eq!(host, p.managers, "{r:?}");
    }
    assert_no_secrets(&r, &gl);
}

fn rotation(p: &Profile) {
    let gl = start(p);
    gl.world().token_interval = Some(1000);
    let q = first(p, &gl, false);
    let id = q.state_id("shell");
    if !p.expiry {
        // before 15.5 tokens never expire: nothing to rotate, no route to do it
        assert!(!has_expiry(&q, "shell"), "{}", q.state());
        let r = go(&q, &gl, p, &["--rotate-before", "1h"]);
        assert_code(&r, 0);
        assert!(verify_only(&gl.world().lines()), "{:?}", gl.world().lines());
        return;
    }
    let old = q.state_token("shell");
    let mut st = q.state();
    st["shell"]["token_obtained_at"] = "2000-01-01T00:00:00Z".into();
    q.write("runner-data.json", &st.to_string());
    let r = go(&q, &gl, p, &[]);
    assert_code(&r, 0);
    let lines = gl.world().lines();
    assert_eq!(
        count(&lines, "POST /runners/reset_authentication_token"),
        1,
        "{lines:?}"
    );
    let new = gl.world().token_of(id);
    assert_ne!(new, old);
    assert_eq!(q.state_token("shell"), new);
    assert!(p.issued_form(&new, p.user_runners), "{new}");
    assert!(config_tokens_valid(&q, &gl));
    assert!(r.stderr.contains("rotated shell runner"), "{r:?}");
    assert_no_secrets(&r, &gl);
}

fn heal_or_recreate(p: &Profile) {
    let gl = start(p);
    let q = first(p, &gl, true);
    let (shell, batch) = (q.state_id("shell"), q.state_id("batch"));
    gl.world().rotate(shell);
    gl.world().runners.remove(&batch);
    let r = go(&q, &gl, p, &[]);
    assert_code(&r, 0);
    let lines = gl.world().lines();
    let reset = format!("POST /runners/{shell}/reset_authentication_token");
    if p.reset_by_id {
        assert!(lines.contains(&reset), "{lines:?}");
        assert_eq!(q.state_id("shell"), shell);
        assert!(
            r.stderr.contains(&format!("healed shell runner {shell}")),
            "{r:?}"
        );
    } else {
        // before 14.3: a new runner, the old one named and left alone
        assert!(
            r.stderr
                .contains("cannot reset a runner's token by id (before 14.3)"),
            "{r:?}"
        );
        assert!(
            r.stderr
                .contains(&format!("old shell runner {shell} may remain in GitLab")),
            "{r:?}"
        );
        assert_ne!(q.state_id("shell"), shell);
        assert!(gl.world().runners.contains_key(&shell));
    }
    // the deleted runner is made again
    assert_ne!(q.state_id("batch"), batch);
    assert!(
        r.stderr
            .contains(&format!("runner {batch} no longer exists in GitLab")),
        "{r:?}"
    );
    assert!(!lines.contains(&format!("POST /runners/{batch}/reset_authentication_token")));
    assert!(config_tokens_valid(&q, &gl));
    assert_no_secrets(&r, &gl);
}

fn stateless(p: &Profile) {
    let gl = start(p);
    let q = pat_prefix(p.admin());
    let r = go(&q, &gl, p, &["--stateless"]);
    assert_code(&r, 0);
    assert!(!q.exists("runner-data.json"));
    assert_eq!(gl.world().runners.len(), 2);
    assert!(config_tokens_valid(&q, &gl));
    gl.world().requests.clear();
    let before = q.snapshot("config.toml");
    let ids: Vec<u64> = gl.world().runners.keys().copied().collect();
    let r = go(&q, &gl, p, &["--stateless"]);
    assert_code(&r, 0);
    // before 15.10 verify does not name the runner of config.toml's token:
    // the template's `id = {shell.id}` does; batch's block has no id
    let batch = {
        let w = gl.world();
        w.runners
            .values()
            .find(|r| r.description.ends_with("-batch"))
            .map(|r| r.id)
            .unwrap()
    };
    let batch_reset = format!("POST /runners/{batch}/reset_authentication_token");
    if p.verify_json {
        assert!(writes(&gl).is_empty(), "{:?}", gl.world().lines());
    } else if p.reset_by_id {
        // batch gets a fresh token for the same runner; shell keeps its own
        assert_eq!(writes(&gl), vec![batch_reset]);
        assert_eq!(gl.world().runners.keys().copied().collect::<Vec<_>>(), ids);
    } else {
        // and before 14.3 batch gets a new runner (the old one goes at the
        // next start); shell keeps its own
        assert_eq!(writes(&gl), vec![batch_reset, "POST /runners".to_string()]);
        assert_eq!(gl.world().runners.len(), 3);
        assert!(config_tokens_valid(&q, &gl));
        return;
    }
    let list = if p.group {
        "GET /groups/42/runners"
    } else {
        "GET /runners/all"
    };
    assert!(
        gl.world().lines().iter().any(|l| l == list),
        "{:?}",
        gl.world().lines()
    );
    if p.verify_json {
        assert_eq!(q.snapshot("config.toml"), before);
    }
    assert!(config_tokens_valid(&q, &gl));
    assert_no_secrets(&r, &gl);
}

fn prune(p: &Profile) {
    let gl = start(p);
    let q = first(p, &gl, true);
    let (gone, other) = {
        let mut w = gl.world();
        let gone = w.add_runner("node12-gpu", &["node12", "gpu"], p.user_runners);
        let other = w.add_runner("node13-gpu", &["node13", "gpu"], p.user_runners);
        for id in [gone, other] {
            if p.group {
                let r = w.runners.get_mut(&id).unwrap();
                r.runner_type = "group_type".into();
                r.owner = Some(42);
            }
        }
        (gone, other)
    };
    let r = go(&q, &gl, p, &["--prune"]);
    assert_code(&r, 0);
    assert_eq!(writes(&gl), [format!("DELETE /runners/{gone}")]);
    let w = gl.world();
    assert!(w.runners.contains_key(&other));
    assert!(w.runners.contains_key(&q.state_id("shell")));
    drop(w);
    assert_no_secrets(&r, &gl);
}

fn unregister(p: &Profile) {
    let gl = start(p);
    let q = first(p, &gl, false);
    let r = go(&q, &gl, p, &["unregister"]);
    assert_code(&r, 0);
    assert!(gl.world().runners.is_empty());
    assert_eq!(writes(&gl), ["DELETE /runners", "DELETE /runners"]);
    assert_eq!(q.state(), serde_json::json!({"batch": {}, "shell": {}}));
    assert_no_secrets(&r, &gl);
}

/// The runner types of the import and kind scenarios, one a token form.
const FORM_TYPES: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];

/// `import` of a hand-registered config.toml holding every token form of
/// the profile; then the run (template rendering) and `status` (masks).
fn import(p: &Profile) {
    let gl = start(p);
    let mut config = String::from("concurrent = 2\n");
    let mut runners = Vec::new();
    {
        let mut w = gl.world();
        let forms = p.forms();
        assert!(forms.len() <= FORM_TYPES.len());
        for (i, form) in forms.iter().enumerate() {
            // a runner GitLab issued this token form
            let user = form.contains("glrt-");
            if i >= forms.len() - p.held.len() {
                w.next_tokens.push_back(form.clone());
            }
            let ty = FORM_TYPES[i];
            let id = w.add_runner(&format!("node12-{ty}"), &["node12", ty], user);
            let token = w.token_of(id);
            config.push_str(&format!(
                "\n[[runners]]\n  name = \"node12-{ty}\"\n  url = \"{}\"\n  id = {id}\n  token = \"{token}\"\n  executor = \"shell\"\n",
                gl.url()
            ));
            runners.push((ty, id, token));
        }
    }
    let q = Prefix::new();
    q.write("config.toml", &config);
    let r = go(&q, &gl, p, &["import"]);
    assert_code(&r, 0);
    assert_no_secrets(&r, &gl);
    for (ty, id, token) in &runners {
        assert_eq!(q.state_id(ty), *id, "{ty}");
        assert_eq!(&q.state_token(ty), token, "{ty}");
    }
    // the template renders every form back: the run only verifies
    gl.world().requests.clear();
    let before = q.snapshot("config.toml");
    let r = go(&q, &gl, p, &[]);
    assert_code(&r, 0);
    assert!(verify_only(&gl.world().lines()), "{:?}", gl.world().lines());
    assert_eq!(q.snapshot("config.toml"), before);
    assert_no_secrets(&r, &gl);
    // status shows each token masked
    let r = go(&q, &gl, p, &["status"]);
    assert_code(&r, 0);
    for (ty, _, token) in &runners {
        let row = r.stdout.lines().find(|l| l.starts_with(ty)).unwrap_or("");
        assert!(
            row.contains(&mask(token)) && row.contains(" yes "),
            "{row}\n{r:?}"
        );
        assert!(mask(token).ends_with(&token[token.len() - 4..]), "{token}");
    }
    assert_no_secrets(&r, &gl);
}

/// Every runner token form in admin-token is refused before any request;
/// the 20-character form has no prefix to tell it by, so it is taken for
/// a registration token, which GitLab refuses.
fn admin_token_kinds(p: &Profile) {
    let gl = start(p);
    for form in p.forms() {
        gl.world().issued.push(form.clone());
        let q = Prefix::standard(&form);
        gl.world().requests.clear();
        let r = go(&q, &gl, p, &[]);
        assert_no_secrets(&r, &gl);
        let unprefixed = form.len() == 20 && !form.contains(['-', '_']);
        if unprefixed {
            assert!(r.code == 77 || r.code == 78, "{form}: {r:?}");
            assert_eq!(gl.world().lines(), ["POST /runners"], "{form}");
        } else {
            assert_code(&r, 78);
            assert!(
                r.stderr.contains("it holds a runner authentication token"),
                "{form}: {r:?}"
            );
            assert!(gl.world().requests.is_empty(), "{form}");
        }
        assert!(!q.exists("config.toml"));
    }
}

fn status(p: &Profile) {
    let gl = start(p);
    gl.world().token_interval = Some(30 * 86_400);
    let q = first(p, &gl, true);
    let before = q.snapshot("runner-data.json");
    let r = go(&q, &gl, p, &["status"]);
    assert_code(&r, 0);
    for ty in ["shell", "batch"] {
        let row = r.stdout.lines().find(|l| l.starts_with(ty)).unwrap_or("");
        let hint = mask(&q.state_token(ty));
        assert!(row.contains(&hint) && row.contains(" yes "), "{row}\n{r:?}");
    }
    let row = r
        .stdout
        .lines()
        .find(|l| l.starts_with("access-token"))
        .unwrap_or("");
    if p.token_self {
        assert!(row.contains("api"), "{row}");
    } else {
        assert!(row.contains("(unknown: GitLab < 15.5)"), "{row}");
    }
    assert!(writes(&gl).is_empty(), "{:?}", gl.world().lines());
    assert_eq!(q.snapshot("runner-data.json"), before);
    assert_no_secrets(&r, &gl);
}

fn doctor(p: &Profile) {
    let gl = start(p);
    let settings = if p.group {
        "GITLAB_RUNNER_AUTH_RUNNER_TYPE=group_type\nGITLAB_RUNNER_AUTH_GROUP_ID=42\n"
    } else {
        ""
    };
    let q = crate::doctor::healthy_with(&gl, p.admin(), settings);
    gl.world().requests.clear();
    let r = crate::doctor::doctor(&q, &gl, &[]);
    assert_code(&r, 0);
    let all = crate::doctor::lines(&r);
    for ty in ["shell", "batch"] {
        let id = q.state_id(ty);
        assert!(
            all.iter().any(|(s, n, t)| s == "ok"
                && n == &format!("{ty} runner")
                && t.contains("valid")
                && (!p.verify_json || t.contains(&format!("runner {id}")))),
            "{ty}: {r:?}"
        );
    }
    if !p.token_self {
        assert!(
            r.stdout
                .contains("GitLab cannot say its scopes or expiry (before 15.5)"),
            "{r:?}"
        );
    }
    crate::doctor::assert_read_only(&gl);
    assert_no_secrets(&r, &gl);
}

fn plan(p: &Profile) {
    let gl = start(p);
    let q = first(p, &gl, false);
    let r = go(&q, &gl, p, &["plan"]);
    assert_code(&r, 0);
    assert!(r.stdout.contains("nothing to do"), "{r:?}");
    let id = q.state_id("shell");
    gl.world().rotate(id);
    let before = (q.snapshot("config.toml"), q.snapshot("runner-data.json"));
    let r = go(&q, &gl, p, &["plan"]);
    assert_code(&r, 2);
    assert!(verify_only(&gl.world().lines()), "{:?}", gl.world().lines());
    assert!(
        r.stdout.contains(&format!(
            "shell (runner {id}): token rejected by GitLab; would create"
        )),
        "{r:?}"
    );
    assert_eq!(
        (q.snapshot("config.toml"), q.snapshot("runner-data.json")),
        before
    );
    assert_no_secrets(&r, &gl);
}

/// The 429s: the migration backoff any runner route may answer is waited
/// out; GitLab.com's per-IP budget of unauthenticated requests, once spent,
/// is a `Retry-After` past `--wait` (POST /runners is exempt).
fn rate_limits(p: &Profile) {
    let gl = start(p);
    let q = first(p, &gl, false);
    gl.world()
        .fault(Some("POST"), "/runners/verify", FaultKind::Backoff(1), 1);
    let r = go(&q, &gl, p, &[]);
    assert_code(&r, 0);
    assert!(r.stderr.contains("Executing database migrations"), "{r:?}");
    assert_eq!(count(&gl.world().lines(), "POST /runners/verify"), 3);
    let Some(budget) = p.unauthenticated_budget else {
        return;
    };
    // the access token's requests are not counted: only runner-token ones
    assert!(
        gl.world().unauthenticated_seen <= 6,
        "{}",
        gl.world().unauthenticated_seen
    );
    gl.world().unauthenticated_seen = budget;
    let r = go(&q, &gl, p, &[]);
    assert_code(&r, 69);
    // said at once, naming the limit
    assert!(r.stderr.contains("429"), "{r:?}");
    assert!(
        r.stderr
            .contains("rate limit unauthenticated_traffic_per_ip")
            && r.stderr.contains("not waiting"),
        "{r:?}"
    );
    let before = q.snapshot("config.toml");
    let r = go(&q, &gl, p, &["--offline-ok"]);
    assert_code(&r, 0);
    assert_eq!(q.snapshot("config.toml"), before, "the last config kept");
    // POST /runners is exempt: registration answers 410, not 429
    let reg = Prefix::standard(REGISTRATION_TOKEN);
    let r = go(&reg, &gl, p, &[]);
    assert_code(&r, 78);
    assert!(
        r.stderr.contains("registration tokens are disabled"),
        "{r:?}"
    );
}

/// One test a profile × scenario.
macro_rules! matrix {
    ($($module:ident => $name:literal),* $(,)?) => {$(
        mod $module {
            matrix!(@scenarios $name;
                first_run_created, first_run_registered, no_change, rotation,
                heal_or_recreate, stateless, prune, unregister, import,
                admin_token_kinds, status, doctor, plan, rate_limits);
        }
    )*};
    (@scenarios $name:literal; $($scenario:ident),*) => {$(
        #[test]
        fn $scenario() {
            super::$scenario(super::profile($name));
        }
    )*};
}

matrix! {
    v13_12 => "13.12",
    v14_10 => "14.10",
    v15_11 => "15.11",
    v16_11 => "16.11",
    v17_11 => "17.11",
    v18_11 => "18.11",
    v19_x => "19.x",
    gitlab_com => "gitlab.com",
}

#[test]
fn every_profile_is_in_the_matrix() {
    let names: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "13.12",
            "14.10",
            "15.11",
            "16.11",
            "17.11",
            "18.11",
            "19.x",
            "gitlab.com"
        ]
    );
}

/// The README's version table is the profiles' rows
/// (`Profile::readme_row`), in order.
#[test]
fn the_readme_version_table_matches_the_profiles() {
    let readme = include_str!("../../README.md");
    let start = "<!-- version table: checked by tests/it/profiles.rs -->";
    let table = readme
        .split_once(start)
        .and_then(|(_, rest)| rest.split_once("\n\n"))
        .map(|(t, _)| t.trim())
        .expect("the README has the version table");
    let rows: Vec<&str> = table.lines().skip(2).collect();
    let want: Vec<String> = PROFILES.iter().map(Profile::readme_row).collect();
    assert_eq!(
        rows,
        want,
        "README version table differs from the profiles; the rows should be:\n{}",
        want.join("\n")
    );
}
