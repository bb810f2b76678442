// SPDX-License-Identifier: MIT
//! Regressions from a second review, of the token-issuing paths (lost
//! answers, the pending-create record, ghost takeover, SIGTERM, leftovers).
//! Each `r2_fN_` test is an attack that worked before its fix; the comment
//! above each names the finding. The `r2_ok_` tests are attacks the code
//! survived when reviewed.

use crate::support::*;
use std::process::Command;
use std::time::Duration;

fn pat_prefix() -> Prefix {
    crate::support::pat_prefix(REGISTRATION_TOKEN)
}

/// How many runners GitLab holds described `node12-<ty>`.
fn count(gl: &FakeGitlab, ty: &str) -> usize {
    let want = format!("{HOST}-{ty}");
    gl.world()
        .runners
        .values()
        .filter(|r| r.description == want)
        .count()
}

/// The tool with exactly `args` after `--api-url URL --prefix DIR --hostname node12`
/// (no default `--timeout`/`--wait`, which cannot be given twice).
fn run_raw(p: &Prefix, gl: &FakeGitlab, args: &[&str]) -> Run {
    let mut c = command(p);
    c.args(["--api-url", &gl.url(), "--prefix"])
        .arg(&p.dir)
        .args(["--hostname", HOST])
        .args(args);
    run_cmd(c)
}

/// RFC 3339 (UTC, seconds) of `now + offset` seconds.
fn rfc3339_in(offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}", now + offset),
            "+%Y-%m-%dT%H:%M:%SZ",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// F1 (critical). GitLab is slow (a cluster reboot): the create takes
/// longer than `--timeout`, the tool gives up on the answer (ambiguous),
/// lists at once, sees no runner yet, says "GitLab made no batch runner,
/// so creating it again" and creates a second. The first create then
/// completes: two batch runners, with an access token, and nothing names
/// the extra one. The next run has no pending record, so it stays.
#[test]
fn r2_f1_a_create_slower_than_the_timeout_leaves_an_unnamed_duplicate() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix();
    gl.world().fault(
        Some("POST"),
        "/runners",
        FaultKind::Delay(Duration::from_secs(3)),
        1,
    );
    let r = run_raw(&p, &gl, &["--timeout", "1s", "--wait", "10s"]);
    // (calls that issue tokens wait longer than GitLab's own timeout: the
    // slow create has landed when the run ends)
    let again = run(&p, &gl, &[]);
    assert_code(&again, 0);
    assert_eq!(
        (count(&gl, "batch"), count(&gl, "shell")),
        (1, 1),
        "a duplicate runner left behind, unnamed:\n{r:?}\n--- rerun\n{again:?}"
    );
}

/// F1b (high). The same late landing for a reset by id, which the code
/// calls "always repeatable": the heal's reset outlasts `--timeout`, is
/// repeated, the repeat's token is stored and written to config.toml (exit
/// 0, gitlab-runner starts), then the first reset lands and kills it. The
/// token GitLab holds for the runner is in no file.
#[test]
fn r2_f1b_a_reset_by_id_slower_than_the_timeout_leaves_a_dead_token() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix();
    assert_code(&run(&p, &gl, &[]), 0);
    let id = p.state_id("batch");
    gl.world().rotate(id); // the state's token is dead: heal by id
    gl.world().fault(
        Some("POST"),
        &format!("/runners/{id}/reset_authentication_token"),
        FaultKind::Delay(Duration::from_secs(3)),
        1,
    );
    let r = run_raw(&p, &gl, &["--timeout", "1s", "--wait", "10s"]);
    assert_code(&r, 0);
    let live = gl.world().token_of(id);
    assert!(
        p.state_token("batch") == live && p.read("config.toml").contains(&live),
        "config.toml and the state hold a dead token for runner {id}:\n{r:?}"
    );
}

/// F2 (critical). After an ambiguous create (504 after GitLab acted), the
/// lookup for the runner GitLab made fails (GitLab overloaded: 503 until
/// `--wait` is spent). `create_runner` treats that Unreachable error as
/// "no runner was made" and clears the pending-create record (here it even
/// removes the new state file), so the next run creates a second runner and
/// never looks for the first.
#[test]
fn r2_f2_a_failed_lookup_after_a_lost_create_drops_the_pending_record() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix();
    gl.world().fault(
        Some("GET"),
        "/runners/all",
        FaultKind::Status {
            status: 503,
            retry_after: None,
        },
        1000,
    );
    let r = run_hooked(
        &p,
        &gl,
        &["--wait", "1s"],
        &[(0, Phase::Acted, None, Then::Status(504))],
    );
    assert_code(&r, 69);
    gl.world().faults.clear();
    let pending_kept =
        p.exists("runner-data.json") && !p.state()["batch"]["create_pending_since"].is_null();
    let again = run(&p, &gl, &[]);
    assert_code(&again, 0);
    assert!(
        pending_kept && (count(&gl, "batch"), count(&gl, "shell")) == (1, 1),
        "pending record kept: {pending_kept}; runners: {} batch, {} shell\n{r:?}\n--- rerun\n{again:?}",
        count(&gl, "batch"),
        count(&gl, "shell")
    );
}

/// F3 (critical). SIGTERM (systemd's TimeoutStartSec, `systemctl stop`)
/// while a lost create is being resolved: the lookup stops with
/// Kind::Terminated, which also clears the pending record. Exit 143, and
/// the next run leaves GitLab with two batch runners, none named.
#[test]
fn r2_f3_sigterm_while_resolving_a_lost_create_forgets_the_runner_gitlab_made() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix();
    let r = run_hooked(
        &p,
        &gl,
        &[],
        &[(0, Phase::Acted, Some("TERM"), Then::Status(504))],
    );
    assert_code(&r, 143);
    let again = run(&p, &gl, &[]);
    assert_code(&again, 0);
    assert_eq!(
        (count(&gl, "batch"), count(&gl, "shell")),
        (1, 1),
        "\n{r:?}\n--- rerun\n{again:?}"
    );
}

const SHELL_ONLY: &str = r#"concurrent = 1

[[runners]]
  name = "{hostname}-shell"
  url = "http://127.0.0.1"
  token = "{shell}"
  executor = "shell"
"#;

/// F4 (high). The ghost is recognised by GitLab's `created_at` against
/// the local clock (`since - 300 s`). A pending record written by a node
/// whose clock was 15 minutes ahead (boot before NTP sync; the same holds
/// within one run when GitLab's clock is behind) makes the runner GitLab
/// made look too old: with an access token nothing is said and a second
/// runner is created. The control (no skew) shows the takeover works.
#[test]
fn r2_f4_a_pending_create_written_by_a_clock_ahead_of_gitlab_is_not_taken_over() {
    for (skew, label) in [(0, "no skew"), (900, "clock 15 min ahead")] {
        let gl = FakeGitlab::start(World::default());
        let p = Prefix::new();
        p.write("admin-token", REGISTRATION_TOKEN);
        p.write("access-token", ADMIN_PAT);
        p.write("config.template", SHELL_ONLY);
        // the killed run: pending record, and the runner GitLab made
        p.write(
            "runner-data.json",
            &format!(
                r#"{{"shell": {{"create_pending_since": "{}"}}}}"#,
                rfc3339_in(skew)
            ),
        );
        let ghost = gl
            .world()
            .add_runner("node12-shell", &["node12", "node", "shell"], false);
        let r = run(&p, &gl, &[]);
        assert_code(&r, 0);
        assert_eq!(
            count(&gl, "shell"),
            1,
            "{label}: ghost {ghost} not taken over, a second runner made:\n{r:?}"
        );
        assert_eq!(p.state_id("shell"), ghost, "{label}");
    }
}

/// F5 (medium). A ghost found on a GitLab without reset by id (< 14.3) is
/// not taken over (Unsupported → None), and the tool then says "GitLab
/// made no batch runner, so creating it again": the runner it just found
/// is left as a duplicate and never named.
#[test]
fn r2_f5_a_ghost_that_cannot_be_reset_is_reported_as_never_made() {
    let mut world = World::default();
    world.no_reset_by_id = true;
    let gl = FakeGitlab::start(world);
    let p = pat_prefix();
    let r = run_hooked(&p, &gl, &[], &[(0, Phase::Acted, None, Then::Drop)]);
    assert_code(&r, 0);
    let ghost = *gl.world().runners.keys().next().unwrap();
    assert!(
        count(&gl, "batch") == 1
            || (r.stderr.contains(&format!("{ghost}")) && r.stderr.contains("may remain")),
        "ghost {ghost} left, unnamed: {} batch runners\n{r:?}",
        count(&gl, "batch")
    );
}

/// F6 (medium). `ensure_persistable` proves the state directory takes a
/// write, not that `runner-data.json` can be replaced: a state file that is
/// a mount point (a bind-mounted file, as containers and some config
/// managers do) or immutable (`chattr +i`) refuses the rename. A rotation
/// then resets the token (the old one dies), the rename fails (exit 73),
/// and the new token is lost.
#[test]
fn r2_f6_a_state_file_that_cannot_be_renamed_over_loses_a_rotated_token() {
    if !is_root() {
        eprintln!("skipped: needs root for mount --bind");
        return;
    }
    let mut world = World::default();
    world.token_interval = Some(100_000);
    let gl = FakeGitlab::start(world);
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let mut st = p.state();
    st["shell"]["token_obtained_at"] = "2000-01-01T00:00:00Z".into();
    p.write("runner-data.json", &st.to_string());
    let state = p.path("runner-data.json");
    let mounted = Command::new("mount")
        .arg("--bind")
        .arg(&state)
        .arg(&state)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot bind-mount here");
        return;
    }
    gl.world().requests.clear();
    let r = run(&p, &gl, &[]);
    let _ = Command::new("umount").arg(&state).status();
    let lines = gl.world().lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("reset_authentication_token")),
        "a token was reset although it could not be saved: {lines:?}\n{r:?}"
    );
}

/// F7 (medium). Stateless mode: SIGTERM during a create. `store` persists
/// nothing in stateless mode, then stops the run (143) before
/// `config.toml` is written: the token GitLab issued is in no file (a run
/// stopped by SIGTERM must finish persisting a token already issued). For
/// a rotation the live `config.toml` keeps a dead token.
#[test]
fn r2_f7_stateless_sigterm_after_a_create_does_not_persist_the_token() {
    let p_args = ["--stateless"];
    let first_create = {
        let gl = FakeGitlab::start(World::default());
        let p = pat_prefix();
        assert_code(&run(&p, &gl, &p_args), 0);
        gl.world()
            .lines()
            .iter()
            .position(|l| l == "POST /runners")
            .unwrap()
    };
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix();
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

/// F8 (low). A create answer that carries the token but a
/// `token_expires_at` the tool cannot parse is a Data error: the token is
/// thrown away (only the hint says a runner may remain). The token should
/// be stored, its expiry treated as unknown, with a warning.
#[test]
fn r2_f8_an_unparsable_expiry_throws_away_the_issued_token() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let token = "glrt-Unparsable0123456789expiry";
    gl.world().fault(
        Some("POST"),
        "/runners",
        FaultKind::Raw {
            status: 201,
            content_type: "application/json".into(),
            body: format!(r#"{{"id": 4242, "token": "{token}", "token_expires_at": "2030-01-01 00:00:00 UTC"}}"#),
        },
        1,
    );
    let r = run(&p, &gl, &[]);
    let saved = p.exists("runner-data.json") && p.read("runner-data.json").contains(token);
    assert!(saved, "the token GitLab issued was dropped:\n{r:?}");
}

/// F9 (low). A leftover temporary file the trust rules refuse is logged as
/// "leaving …" but removed with the others: the token it held is gone.
#[test]
fn r2_f9_a_leftover_refused_by_the_trust_rules_is_removed_anyway() {
    if !is_root() {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let id = p.state_id("shell");
    let new = gl.world().rotate(id);
    let mut st = p.state();
    st["shell"]["token"] = new.clone().into();
    let tmp = ".runner-data.json.tmp-99998";
    p.write(tmp, &st.to_string());
    std::os::unix::fs::chown(p.path(tmp), Some(65534), Some(65534)).unwrap();
    let r = run(&p, &gl, &[]);
    assert!(r.stderr.contains("leaving"), "{r:?}");
    assert!(
        p.exists(tmp) || p.state_token("shell") == new,
        "said it was left, but removed it and its token:\n{r:?}"
    );
}

/// F10 (low). The lock is per prefix, but leftover recovery scans the
/// directory of `--config`, which two prefixes may share: the temporary
/// file of a live run (here: a live pid) is taken for a leftover and
/// deleted, so that run's rename fails.
#[test]
fn r2_f10_the_temp_file_of_a_live_process_is_taken_for_a_leftover() {
    let gl = FakeGitlab::start(World::default());
    let shared = Prefix::new();
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let mut live = Command::new("sleep").arg("30").spawn().unwrap();
    let tmp = format!(".config.toml.tmp-{}", live.id());
    shared.write(&tmp, "concurrent = 1\n");
    let config = shared.path("config.toml");
    let r = run(&p, &gl, &["--config", config.to_str().unwrap()]);
    let still = shared.exists(&tmp);
    let _ = live.kill();
    let _ = live.wait();
    assert_code(&r, 0);
    assert!(still, "removed the temp file of live pid:\n{r:?}");
}

/// F11 (low). A run killed during `probe_writable` leaves
/// `.gitlab-runner-auth.probe-PID` (filled with the state's and config's
/// size); nothing ever removes it, and one more piles up per kill.
#[test]
fn r2_f11_a_probe_file_left_by_a_killed_run_is_never_removed() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let probe = ".gitlab-runner-auth.probe-99997";
    p.write(probe, &"\0".repeat(8192));
    assert_code(&run(&p, &gl, &[]), 0);
    assert!(!p.exists(probe), "still there: {:?}", p.files());
}

// What held up: attacks that the reviewed code survives (these pass).

/// A heal whose answer is lost twice: exit 69, the runner stays, and the
/// next run heals it: one runner per type, every token live.
#[test]
fn r2_ok_a_heal_whose_answer_is_lost_twice_recovers_next_run() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix();
    assert_code(&run(&p, &gl, &[]), 0);
    let id = p.state_id("batch");
    gl.world().rotate(id);
    gl.world().requests.clear();
    // 2 verifies and 2 GETs (in parallel), then the reset by id and its repeat
    let r = run_hooked(
        &p,
        &gl,
        &[],
        &[
            (4, Phase::Acted, None, Then::Drop),
            (5, Phase::Acted, None, Then::Status(504)),
        ],
    );
    let reset = format!("POST /runners/{id}/reset_authentication_token");
    assert_eq!(gl.world().lines()[4..6], [reset.clone(), reset], "{r:?}");
    assert_code(&r, 69);
    let again = run(&p, &gl, &[]);
    assert_code(&again, 0);
    assert_eq!((count(&gl, "batch"), count(&gl, "shell")), (1, 1));
    assert_eq!(p.state_id("batch"), id);
    assert_eq!(p.state_token("batch"), gl.world().token_of(id));
}

/// The reset that takes over a ghost is lost twice: the pending record
/// stays, and the next run takes the same ghost over.
#[test]
fn r2_ok_a_takeover_reset_lost_twice_keeps_the_pending_record() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix();
    // create (lost), list, details, reset (lost), reset (lost)
    let r = run_hooked(
        &p,
        &gl,
        &[],
        &[
            (0, Phase::Acted, None, Then::Drop),
            (3, Phase::Acted, None, Then::Drop),
            (4, Phase::Acted, None, Then::Drop),
        ],
    );
    assert_code(&r, 69);
    assert!(!p.state()["batch"]["create_pending_since"].is_null());
    let again = run(&p, &gl, &[]);
    assert_code(&again, 0);
    assert_eq!(
        (count(&gl, "batch"), count(&gl, "shell")),
        (1, 1),
        "{again:?}"
    );
}

/// SIGTERM while a create waits out a Retry-After: the run stops at once
/// (143), nothing was created, no pending record is left.
#[test]
fn r2_ok_sigterm_during_a_retry_after_wait_stops_at_once() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    gl.world().fault(
        Some("POST"),
        "/runners",
        FaultKind::Status {
            status: 429,
            retry_after: Some(30),
        },
        1,
    );
    // SIGTERM right after the 429 went out: the tool is in its 30 s wait
    let t0 = std::time::Instant::now();
    let r = run_hooked(
        &p,
        &gl,
        &["--wait", "60s"],
        &[(0, Phase::Answered, Some("TERM"), Then::Continue)],
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_code(&r, 143);
    assert_eq!(gl.world().runners.len(), 0);
    assert!(!p.exists("runner-data.json"));
}

/// A 429 with an absurd Retry-After: the run gives up at once (bounded by
/// `--wait`), creates nothing.
#[test]
fn r2_ok_a_huge_retry_after_gives_up_within_wait() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    gl.world().fault(
        Some("POST"),
        "/runners",
        FaultKind::Status {
            status: 429,
            retry_after: Some(u64::MAX / 2),
        },
        1,
    );
    let t0 = std::time::Instant::now();
    let r = run(&p, &gl, &[]);
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_code(&r, 69);
    assert_eq!(gl.world().runners.len(), 0);
}

/// The crash matrix in stateless mode (which it does not cover): SIGKILL at
/// every request boundary of a first run and of a rotation; after a rerun
/// GitLab holds one runner per type and config.toml only live tokens.
#[test]
fn r2_ok_stateless_sigkill_at_every_request_boundary() {
    let args = ["--stateless"];
    for rotation in [false, true] {
        let setup = || {
            let mut world = World::default();
            world.token_interval = Some(100_000);
            let gl = FakeGitlab::start(world);
            let p = pat_prefix();
            if rotation {
                assert_code(&run(&p, &gl, &args), 0);
                // config.toml's shell token looks old: due for rotation
                let text = p.read("config.toml");
                let old: String = text
                    .lines()
                    .map(|l| {
                        if l.trim_start().starts_with("token_obtained_at") {
                            "  token_obtained_at = 2000-01-01T00:00:00Z".to_string()
                        } else {
                            l.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                p.write("config.toml", &format!("{old}\n"));
            }
            gl.world().requests.clear();
            (gl, p)
        };
        let (gl, p) = setup();
        assert_code(&run(&p, &gl, &args), 0);
        let lines = gl.world().lines();
        assert!(
            !rotation || lines.iter().any(|l| l.contains("reset")),
            "{lines:?}"
        );
        drop((gl, p));
        for (n, line) in lines.iter().enumerate() {
            for phase in [Phase::Arrival, Phase::Acted, Phase::Answered] {
                let (gl, p) = setup();
                let then = if phase == Phase::Answered {
                    Then::Continue
                } else {
                    Then::Drop
                };
                let killed = run_hooked(&p, &gl, &args, &[(n, phase, Some("KILL"), then)]);
                let again = run(&p, &gl, &args);
                assert_code(&again, 0);
                assert_eq!(
                    (count(&gl, "batch"), count(&gl, "shell")),
                    (1, 1),
                    "rotation {rotation} #{n} {line} {phase:?}\n{killed:?}\n{again:?}"
                );
                let table: toml::Table = p.read("config.toml").parse().unwrap();
                let w = gl.world();
                for r in table["runners"].as_array().unwrap() {
                    let t = r["token"].as_str().unwrap();
                    assert!(w.runners.values().any(|x| x.token == t));
                }
            }
        }
    }
}
