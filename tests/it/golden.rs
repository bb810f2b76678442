// SPDX-License-Identifier: MIT
//! Golden files (tests/golden/): what `plan` prints, `plan --json`, the
//! `config.toml` of `make demo`'s run, and what `doctor` prints on a
//! healthy and on a broken host, and with two GitLabs (`plan --json`,
//! `status --json`, `doctor`), with the parts that change from run
//! to run (paths, the port, token tails, times) normalised. Regenerate them
//! all with `GOLDEN=1 cargo test --test it golden::`.

use crate::support::*;
use std::path::PathBuf;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compare `got` with the golden file, or write it with `GOLDEN=1`.
pub(crate) fn check(name: &str, got: &str) {
    let path = golden(name);
    if std::env::var_os("GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; create it with GOLDEN=1", path.display()));
    assert_eq!(
        got,
        want,
        "{name} differs from {}; if the change is intended: GOLDEN=1 cargo test --test it golden::",
        path.display()
    );
}

/// Replace what differs between runs: the prefix, the URL, every token the
/// fake issued (whole or as a masked tail) and RFC 3339 times.
pub(crate) fn normalise(text: &str, p: &Prefix, gl: &FakeGitlab) -> String {
    let mut out = text
        .replace(&path_str(&p.dir), "$PREFIX")
        .replace(&gl.url(), "$URL");
    let mut tokens = gl.world().secrets();
    tokens.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in tokens {
        let tail: String = t
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        out = out
            .replace(&t, "glrt-TOKEN")
            .replace(&format!("…{tail}"), "…tail");
    }
    times(&out)
}

/// `2026-12-01T08:00:00Z` (and with milliseconds) → `$TIME`, except
/// gitlab-runner's zero time.
fn times(text: &str) -> String {
    let shape = |w: &[u8]| {
        w.len() == 20
            && w.iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                10 => *c == b'T',
                13 | 16 => *c == b':',
                19 => *c == b'Z',
                _ => c.is_ascii_digit(),
            })
    };
    let b = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if i + 20 <= b.len() && shape(&b[i..i + 20]) && &b[i..i + 4] != b"0001" {
            out.push_str("$TIME");
            i += 20;
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The demo's setup: GitLab 17+ (registration tokens disabled), 30-day
/// tokens, an access token as `admin-token` and `access-token`, the
/// example template, host `demo01`.
fn demo() -> (FakeGitlab, Prefix) {
    let mut world = World::default();
    world.registration_enabled = false;
    world.token_interval = Some(30 * 86_400);
    let gl = FakeGitlab::start(world);
    let p = pat_prefix(ADMIN_PAT);
    let template = include_str!("../../packaging/examples/config.template")
        .replace("https://gitlab.example.com", &gl.url());
    p.write("config.template", &template);
    (gl, p)
}

fn run_demo(p: &Prefix, gl: &FakeGitlab, args: &[&str]) -> Run {
    run_host(p, &gl.url(), "demo01", args)
}

#[test]
fn plan_text_json_and_the_demo_config() {
    let (gl, p) = demo();
    let r = run_demo(&p, &gl, &["plan"]);
    assert_code(&r, 2);
    check("plan-first-run.txt", &normalise(&r.stdout, &p, &gl));
    let r = run_demo(&p, &gl, &["plan", "--json"]);
    assert_code(&r, 2);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("plan --json is JSON");
    assert_eq!(v["pending"], true);
    check("plan-first-run.json", &normalise(&r.stdout, &p, &gl));

    assert_code(&run_demo(&p, &gl, &[]), 0);
    check(
        "demo-config.toml",
        &normalise(&p.read("config.toml"), &p, &gl),
    );

    // then the batch token dies and the shell runner's tags drift
    let (batch, shell) = (p.state_id("batch"), p.state_id("shell"));
    {
        let mut w = gl.world();
        w.rotate(batch);
        w.runners.get_mut(&shell).unwrap().tags =
            vec!["demo01".into(), "shell".into(), "oops".into()];
    }
    let r = run_demo(&p, &gl, &["plan"]);
    assert_code(&r, 2);
    check("plan-heal-and-drift.txt", &normalise(&r.stdout, &p, &gl));
    let r = run_demo(&p, &gl, &["plan", "--json"]);
    assert_code(&r, 2);
    check("plan-heal-and-drift.json", &normalise(&r.stdout, &p, &gl));
    assert_no_secrets(&r, &gl);
}

/// [`normalise`], and the fake's address where it appears without its
/// scheme (`127.0.0.1:PORT answered`).
fn normalise_doctor(text: &str, p: &Prefix, gl: &FakeGitlab) -> String {
    normalise(text, p, gl).replace(&gl.addr.to_string(), "$ADDR")
}

#[test]
fn doctor_on_a_healthy_and_on_a_broken_host() {
    use crate::doctor::{broken, doctor, healthy};
    let gl = FakeGitlab::start(World::default());
    let p = healthy(&gl);
    let r = doctor(&p, &gl, &[]);
    assert_code(&r, 0);
    check("doctor-healthy.txt", &normalise_doctor(&r.stdout, &p, &gl));

    let gl = FakeGitlab::start(World::default());
    let p = broken(&gl);
    let r = doctor(&p, &gl, &[]);
    assert_code(&r, 77);
    check("doctor-broken.txt", &normalise_doctor(&r.stdout, &p, &gl));
    let r = doctor(&p, &gl, &["--json"]);
    assert_code(&r, 77);
    check("doctor-broken.json", &normalise_doctor(&r.stdout, &p, &gl));
    assert_no_secrets(&r, &gl);
}

/// [`normalise`] for both GitLabs: the second's url
/// `$URL2`, its address `$ADDR2`, the first's `$ADDR`.
fn normalise_two(text: &str, t: &crate::gitlabs::Two) -> String {
    let text = text
        .replace(&t.second.url(), "$URL2")
        .replace(&t.second.addr.to_string(), "$ADDR2");
    let text = normalise(&text, &t.p, &t.second);
    normalise(&text, &t.p, &t.first).replace(&t.first.addr.to_string(), "$ADDR")
}

#[test]
fn plan_status_and_doctor_of_two_gitlabs() {
    let t = crate::gitlabs::two();
    t.p.write(&t.gpu_access(), ADMIN_PAT);
    let r = t.run(&["plan", "--json"]);
    assert_code(&r, 2);
    check("gitlabs-plan-first-run.json", &normalise_two(&r.stdout, &t));
    assert_code(&t.run(&[]), 0);
    let r = t.run(&["status", "--json"]);
    assert_code(&r, 0);
    check("gitlabs-status.json", &normalise_two(&r.stdout, &t));
    let r = crate::doctor::doctor_at(&t.p, &t.first.url(), &[]);
    assert_code(&r, 0);
    check("gitlabs-doctor.txt", &normalise_two(&r.stdout, &t));
    assert_no_secrets(&r, &t.first);
    assert_no_secrets(&r, &t.second);
}
