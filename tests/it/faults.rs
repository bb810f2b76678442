// SPDX-License-Identifier: MIT
//! A boot-time agent's worst morning: proxy errors on calls that issue
//! tokens, answers lost after GitLab acted or arriving after `--timeout`
//! (the pending-create record, the ghost a lost create made), a full disk,
//! an unwritable state directory or state file, temporary and probe files
//! a killed run left, and SIGTERM; and transient failures retried, an
//! unreachable GitLab, junk answers, a bad state file, a lock another run
//! holds, an unwritable `config.toml`.

use crate::support::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

/// The next create (`POST /runners`) is answered `status`, with
/// `Retry-After: retry_after` if given.
fn fail_next_create(gl: &FakeGitlab, status: u16, retry_after: Option<u64>) {
    gl.world().fault(
        Some("POST"),
        "/runners",
        FaultKind::Status {
            status,
            retry_after,
        },
        1,
    );
}

/// GitLab is slow (a cluster reboot): the create outlasts `--timeout` and
/// the tool gives up on the answer, lists at once and sees no runner yet;
/// the first create then lands. Creating a second runner then would leave
/// two batch runners, nothing naming the extra one, and no pending record
/// for the next run to find it by: one runner per type must remain.
#[test]
fn a_create_slower_than_the_timeout_leaves_no_duplicate() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(REGISTRATION_TOKEN);
    gl.world().fault(
        Some("POST"),
        "/runners",
        FaultKind::Delay(Duration::from_secs(3)),
        1,
    );
    let r = run(&p, &gl, &["--timeout", "1s", "--wait", "10s"]);
    // (calls that issue tokens wait longer than GitLab's own timeout: the
    // slow create has landed when the run ends)
    let again = run(&p, &gl, &[]);
    assert_code(&again, 0);
    assert_eq!(
        runners_per_type(&gl),
        (1, 1),
        "a duplicate runner left behind, unnamed:\n{r:?}\n--- rerun\n{again:?}"
    );
}

/// The same late landing for a reset by id: the heal's reset outlasts
/// `--timeout` and is repeated; if the repeat's token were stored and
/// written to config.toml (exit 0, gitlab-runner starts), the first reset
/// landing later would kill it. The token GitLab holds for the runner must
/// be the one in the state and config.toml.
#[test]
fn a_reset_by_id_slower_than_the_timeout_leaves_no_dead_token() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let id = p.state_id("batch");
    gl.world().rotate(id); // the state's token is dead: heal by id
    gl.world().fault(
        Some("POST"),
        &format!("/runners/{id}/reset_authentication_token"),
        FaultKind::Delay(Duration::from_secs(3)),
        1,
    );
    let r = run(&p, &gl, &["--timeout", "1s", "--wait", "10s"]);
    assert_code(&r, 0);
    let live = gl.world().token_of(id);
    assert!(
        p.state_token("batch") == live && p.read("config.toml").contains(&live),
        "config.toml and the state hold a dead token for runner {id}:\n{r:?}"
    );
}

/// After an ambiguous create (504 after GitLab acted), the lookup for the
/// runner GitLab made fails (GitLab overloaded: 503 until `--wait` is
/// spent). That is not "no runner was made": the pending-create record
/// (and the state file holding it) must stay, so that the next run finds
/// the first runner instead of creating a second.
#[test]
fn a_failed_lookup_after_a_lost_create_keeps_the_pending_record() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(REGISTRATION_TOKEN);
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
        pending_kept && runners_per_type(&gl) == (1, 1),
        "pending record kept: {pending_kept}; runners: {} batch, {} shell\n{r:?}\n--- rerun\n{again:?}",
        runners_of_type(&gl, "batch"),
        runners_of_type(&gl, "shell")
    );
}

/// SIGTERM (systemd's TimeoutStartSec, `systemctl stop`) while a lost
/// create is being resolved: the lookup stops (exit 143), but the pending
/// record must not be cleared with it, or the next run leaves GitLab with
/// two batch runners, none named.
#[test]
fn sigterm_while_resolving_a_lost_create_never_forgets_the_runner_gitlab_made() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(REGISTRATION_TOKEN);
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
        runners_per_type(&gl),
        (1, 1),
        "\n{r:?}\n--- rerun\n{again:?}"
    );
}

/// A template with the shell runner only.
const SHELL_ONLY: &str = r#"concurrent = 1

[[runners]]
  name = "{hostname}-shell"
  url = "http://127.0.0.1"
  token = "{shell}"
  executor = "shell"
"#;

/// The ghost (the runner a lost create made) is recognised by GitLab's
/// `created_at` against the local clock. A pending record written by a
/// node whose clock was 15 minutes ahead (boot before NTP sync; the same
/// holds within one run when GitLab's clock is behind) must not make the
/// ghost look too old and a second runner be created, silently with an
/// access token. The control (no skew) shows the takeover works.
#[test]
fn a_pending_create_written_by_a_clock_ahead_of_gitlab_is_still_taken_over() {
    for (skew, label) in [(0, "no skew"), (900, "clock 15 min ahead")] {
        let gl = FakeGitlab::start(World::default());
        let p = Prefix::new();
        p.write("admin-token", REGISTRATION_TOKEN);
        p.write("access-token", ADMIN_PAT);
        p.write("config.template", SHELL_ONLY);
        // the killed run: pending record, and the runner GitLab made
        let since = gitlab_runner_auth::clock::format(gitlab_runner_auth::clock::now() + skew);
        p.write(
            "runner-data.json",
            &format!(r#"{{"shell": {{"create_pending_since": "{since}"}}}}"#),
        );
        let ghost = gl
            .world()
            .add_runner("node12-shell", &["node12", "node", "shell"], false);
        let r = run(&p, &gl, &[]);
        assert_code(&r, 0);
        assert_eq!(
            runners_of_type(&gl, "shell"),
            1,
            "{label}: ghost {ghost} not taken over, a second runner made:\n{r:?}"
        );
        assert_eq!(p.state_id("shell"), ghost, "{label}");
    }
}

/// A ghost found on a GitLab without reset by id (< 14.3) cannot be taken
/// over; the run must then not say "GitLab made no batch runner, so
/// creating it again" and leave the runner it just found as an unnamed
/// duplicate: either no duplicate, or the ghost named as one that may
/// remain.
#[test]
fn a_ghost_that_cannot_be_reset_is_named_not_reported_as_never_made() {
    let mut world = World::default();
    world.no_reset_by_id = true;
    let gl = FakeGitlab::start(world);
    let p = pat_prefix(REGISTRATION_TOKEN);
    let r = run_hooked(&p, &gl, &[], &[(0, Phase::Acted, None, Then::Drop)]);
    assert_code(&r, 0);
    let ghost = *gl.world().runners.keys().next().unwrap();
    assert!(
        runners_of_type(&gl, "batch") == 1
            || (r.stderr.contains(&format!("{ghost}")) && r.stderr.contains("may remain")),
        "ghost {ghost} left, unnamed: {} batch runners\n{r:?}",
        runners_of_type(&gl, "batch")
    );
}

/// A state directory that takes a write does not prove `runner-data.json`
/// can be replaced: a state file that is a mount point (a bind-mounted
/// file, as containers and some config managers do) or immutable
/// (`chattr +i`) refuses the rename. A rotation must not reset the token
/// (the old one dies) when the new one could not be saved.
#[test]
fn a_state_file_that_cannot_be_renamed_over_is_never_rotated() {
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

/// A create answer that carries the token but a `token_expires_at` the
/// tool cannot parse: the token must be stored (its expiry treated as
/// unknown, with a warning), not thrown away as a junk answer.
#[test]
fn an_unparsable_expiry_keeps_the_issued_token() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let token = "glrt-Unparsable0123456789expiry";
    answer_next_create(
        &gl,
        &format!(
            r#"{{"id": 4242, "token": "{token}", "token_expires_at": "2030-01-01 00:00:00 UTC"}}"#
        ),
    );
    let r = run(&p, &gl, &[]);
    let saved = p.exists("runner-data.json") && p.read("runner-data.json").contains(token);
    assert!(saved, "the token GitLab issued was dropped:\n{r:?}");
}

/// A leftover temporary file the trust rules refuse is logged as
/// "leaving …": it must really be left (or its token used), not removed
/// with the others and its token lost.
#[test]
fn a_leftover_refused_by_the_trust_rules_keeps_its_token() {
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

/// The lock is per prefix, but leftover recovery scans the directory of
/// `--config`, which two prefixes may share: the temporary file of a live
/// run (here: a live pid) is no leftover and must not be deleted (that
/// run's rename would fail).
#[test]
fn the_temp_file_of_a_live_process_is_not_taken_for_a_leftover() {
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

/// A run killed while probing that the state can be written leaves
/// `.gitlab-runner-auth.probe-PID` (filled with the state's and config's
/// size): the next run removes it, so they do not pile up one per kill.
#[test]
fn a_probe_file_left_by_a_killed_run_is_removed() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let probe = ".gitlab-runner-auth.probe-99997";
    p.write(probe, &"\0".repeat(8192));
    assert_code(&run(&p, &gl, &[]), 0);
    assert!(!p.exists(probe), "still there: {:?}", p.files());
}

/// A heal whose answer is lost twice: exit 69, the runner stays, and the
/// next run heals it: one runner per type, every token live.
#[test]
fn a_heal_whose_answer_is_lost_twice_recovers_next_run() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(REGISTRATION_TOKEN);
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
    assert_eq!(runners_per_type(&gl), (1, 1));
    assert_eq!(p.state_id("batch"), id);
    assert_eq!(p.state_token("batch"), gl.world().token_of(id));
}

/// The reset that takes over a ghost is lost twice: the pending record
/// stays, and the next run takes the same ghost over.
#[test]
fn a_takeover_reset_lost_twice_keeps_the_pending_record() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(REGISTRATION_TOKEN);
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
    assert_eq!(runners_per_type(&gl), (1, 1), "{again:?}");
}

/// SIGTERM while a create waits out a Retry-After: the run stops at once
/// (143), nothing was created, no pending record is left.
#[test]
fn sigterm_during_a_retry_after_wait_stops_at_once() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    fail_next_create(&gl, 429, Some(30));
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

/// A 429 with an absurd Retry-After on a create: the run gives up at once
/// (bounded by `--wait`), creates nothing.
#[test]
fn a_huge_retry_after_on_a_create_gives_up_within_wait() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    fail_next_create(&gl, 429, Some(u64::MAX / 2));
    let t0 = std::time::Instant::now();
    let r = run(&p, &gl, &[]);
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_code(&r, 69);
    assert_eq!(gl.world().runners.len(), 0);
}

#[test]
fn proxy_errors_on_a_create_are_repeated_within_wait() {
    let faults = [
        FaultKind::Raw {
            status: 502,
            content_type: "text/html".into(),
            body: "<html><body><h1>502 Bad Gateway</h1></body></html>".into(),
        },
        FaultKind::Status {
            status: 503,
            retry_after: None,
        },
        FaultKind::Status {
            status: 429,
            retry_after: Some(1),
        },
        FaultKind::Drop, // dropped before GitLab read it: refused, in effect
    ];
    for fault in faults {
        let gl = FakeGitlab::start(World::default());
        let p = Prefix::standard(REGISTRATION_TOKEN);
        gl.world().fault(Some("POST"), "/runners", fault.clone(), 1);
        let r = run(&p, &gl, &[]);
        if matches!(fault, FaultKind::Drop) {
            // a dropped connection is ambiguous: without an access token
            // the create is repeated once and the leftover named
            assert_code(&r, 0);
            continue;
        }
        assert_code(&r, 0);
        assert_eq!(
            runners_of_type(&gl, "batch") + runners_of_type(&gl, "shell"),
            2,
            "{fault:?}: {r:?}"
        );
        assert!(r.stderr.contains("retrying in"), "{fault:?}: {r:?}");
        assert!(config_tokens_valid(&p, &gl));
        assert_no_secrets(&r, &gl);
    }
}

#[test]
fn a_create_whose_answer_is_lost_is_taken_over_with_an_access_token() {
    for then in [Then::Drop, Then::Status(504), Then::Status(500)] {
        let gl = FakeGitlab::start(World::default());
        let p = pat_prefix(REGISTRATION_TOKEN);
        let r = run_hooked(&p, &gl, &[], &[(0, Phase::Acted, None, then)]);
        assert_code(&r, 0);
        assert_eq!(runners_per_type(&gl), (1, 1), "{then:?}: {r:?}");
        assert!(
            r.stderr.contains("before the answer was lost") && r.stderr.contains("took it over"),
            "{then:?}: {r:?}"
        );
        let lines = gl.world().lines();
        assert_eq!(
            lines.iter().filter(|l| *l == "POST /runners").count(),
            2,
            "no second create: {lines:?}"
        );
        assert!(config_tokens_valid(&p, &gl), "{then:?}");
        assert_no_secrets(&r, &gl);
        // and the next start only verifies
        gl.world().requests.clear();
        assert_code(&run(&p, &gl, &[]), 0);
        assert!(
            gl.world()
                .requests
                .iter()
                .all(|q| q.method == "GET" || q.path == "/runners/verify")
        );
    }
}

#[test]
fn without_an_access_token_a_lost_create_is_repeated_once_and_named() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let r = run_hooked(&p, &gl, &[], &[(0, Phase::Acted, None, Then::Drop)]);
    assert_code(&r, 0);
    let first = gl.world().requests[0]
        .param("description")
        .cloned()
        .unwrap();
    let first = first.as_str().unwrap();
    assert!(
        r.stderr.contains(&format!(
            "runner '{first}' may remain in GitLab from the first try"
        )),
        "{r:?}"
    );
    assert_eq!(
        runners_of_type(&gl, "batch") + runners_of_type(&gl, "shell"),
        3
    );
    assert!(config_tokens_valid(&p, &gl));
}

#[test]
fn a_rotation_whose_answer_is_lost_is_resolved_by_id() {
    let mut world = World::default();
    world.token_interval = Some(1000);
    let gl = FakeGitlab::start(world);
    let p = pat_prefix(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let id = p.state_id("shell");
    let mut st = p.state();
    st["shell"]["token_obtained_at"] = "2000-01-01T00:00:00Z".into();
    p.write("runner-data.json", &st.to_string());
    gl.world().requests.clear();
    // the reset reaches GitLab (the old token dies), the answer does not;
    // it is the 5th request: 2 verifies and 2 GETs come first
    let r = run_hooked(&p, &gl, &[], &[(4, Phase::Acted, None, Then::Drop)]);
    assert_code(&r, 0);
    let lines = gl.world().lines();
    assert_eq!(
        lines[4], "POST /runners/reset_authentication_token",
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("POST /runners/{id}/reset_authentication_token")),
        "{lines:?}"
    );
    assert_eq!(p.state_id("shell"), id, "the same runner");
    assert_eq!(p.state_token("shell"), gl.world().token_of(id));
    assert!(config_tokens_valid(&p, &gl));
}

#[test]
fn a_full_disk_or_a_read_only_state_stops_before_gitlab_issues_a_token() {
    let mut world = World::default();
    world.token_interval = Some(1000);
    let gl = FakeGitlab::start(world);
    // a 64 KiB tmpfs holding the prefix, filled up after the first run
    let mnt = std::env::temp_dir().join(format!("gra-full-{}", std::process::id()));
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped the full-disk case: cannot mount a tmpfs here (not root?)");
    } else {
        let p = Prefix::standard(REGISTRATION_TOKEN);
        let prefix = mnt.join("prefix");
        std::fs::create_dir(&prefix).unwrap();
        for f in ["admin-token", "config.template"] {
            std::fs::copy(p.path(f), prefix.join(f)).unwrap();
        }
        let mut c = command(&p);
        c.args(["--api-url", &gl.url(), "--prefix"])
            .arg(&prefix)
            .args(["--hostname", HOST]);
        assert_code(&run_cmd(c), 0);
        // due for rotation, and the disk full
        let state_path = prefix.join("runner-data.json");
        let mut st: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
        st["shell"]["token_obtained_at"] = "2000-01-01T00:00:00Z".into();
        std::fs::write(&state_path, st.to_string()).unwrap();
        let _ = std::fs::write(mnt.join("filler"), vec![0u8; 128 * 1024]);
        let before = std::fs::read(&state_path).unwrap();
        gl.world().requests.clear();
        let mut c = command(&p);
        c.args(["--api-url", &gl.url(), "--prefix"])
            .arg(&prefix)
            .args(["--hostname", HOST]);
        let r = run_cmd(c);
        let _ = Command::new("umount").arg(&mnt).status();
        assert_code(&r, 73);
        assert!(
            r.stderr
                .contains("cannot persist a new token, so none was asked for"),
            "{r:?}"
        );
        assert!(
            gl.world()
                .lines()
                .iter()
                .all(|l| !l.contains("reset_authentication_token")),
            "{:?}",
            gl.world().lines()
        );
        let _ = before;
    }
    let _ = std::fs::remove_dir_all(&mnt);

    // a state directory the caller cannot write (gitlab-runner's own user)
    if !std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        eprintln!("skipped the read-only case: not root");
        return;
    }
    let p = Prefix::standard(REGISTRATION_TOKEN);
    for f in [".", "admin-token", "config.template"] {
        std::os::unix::fs::chown(p.path(f), Some(65534), Some(65534)).unwrap();
    }
    let as_nobody = |p: &Prefix| {
        use std::os::unix::process::CommandExt;
        let mut c = command(p);
        c.uid(65534).gid(65534);
        c.args(["--api-url", &gl.url(), "--prefix"])
            .arg(&p.dir)
            .args(["--hostname", HOST]);
        run_cmd(c)
    };
    assert_code(&as_nobody(&p), 0);
    let mut st = p.state();
    st["shell"]["token_obtained_at"] = "2000-01-01T00:00:00Z".into();
    p.write("runner-data.json", &st.to_string());
    std::os::unix::fs::chown(p.path("runner-data.json"), Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&p.dir, std::fs::Permissions::from_mode(0o500)).unwrap();
    let token = p.state_token("shell");
    gl.world().requests.clear();
    let r = as_nobody(&p);
    std::fs::set_permissions(&p.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_code(&r, 73);
    assert!(
        r.stderr
            .contains("cannot persist a new token, so none was asked for"),
        "{r:?}"
    );
    assert!(
        gl.world().lines().iter().all(|l| !l.contains("reset")),
        "{:?}",
        gl.world().lines()
    );
    assert_eq!(
        p.state_token("shell"),
        token,
        "the old token is still the live one"
    );
    assert!(gl.world().runners.values().any(|r| r.token == token));
}

#[test]
fn a_token_left_in_a_temporary_file_by_a_killed_run_is_recovered() {
    for with_pat in [false, true] {
        let gl = FakeGitlab::start(World::default());
        let p = if with_pat {
            pat_prefix(REGISTRATION_TOKEN)
        } else {
            Prefix::standard(REGISTRATION_TOKEN)
        };
        assert_code(&run(&p, &gl, &[]), 0);
        let id = p.state_id("shell");
        // a run rotated the token, wrote the new state to its temporary
        // file and was killed during the fsync, before the rename
        let new = gl.world().rotate(id);
        let mut st = p.state();
        st["shell"]["token"] = new.clone().into();
        let tmp = ".runner-data.json.tmp-99999";
        p.write(tmp, &st.to_string());
        gl.world().requests.clear();
        let r = run(&p, &gl, &[]);
        assert_code(&r, 0);
        assert!(
            r.stderr.contains("recovered the shell runner") && r.stderr.contains(tmp),
            "{r:?}"
        );
        assert!(!p.exists(tmp), "removed");
        assert_eq!(p.state_token("shell"), new);
        assert_eq!(p.state_id("shell"), id);
        let lines = gl.world().lines();
        assert!(
            lines
                .iter()
                .all(|l| !l.contains("reset") && l != "POST /runners"),
            "no heal or create needed: {lines:?}"
        );
        assert!(config_tokens_valid(&p, &gl));
        assert_no_secrets(&r, &gl);
    }
}

#[test]
fn sigterm_during_a_create_saves_the_token_and_exits_143() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let r = run_hooked(
        &p,
        &gl,
        &[],
        &[(0, Phase::Arrival, Some("TERM"), Then::Continue)],
    );
    assert_code(&r, 143);
    assert!(r.stderr.contains("stopped by SIGTERM"), "{r:?}");
    assert_eq!(
        gl.world().lines(),
        vec!["POST /runners"],
        "nothing after the stop"
    );
    let made = gl.world().runners.values().next().unwrap().clone();
    let ty = made.description.trim_start_matches("node12-").to_string();
    assert_eq!(p.state_token(&ty), made.token, "the issued token was saved");
    // the rerun makes only the other runner
    gl.world().requests.clear();
    assert_code(&run(&p, &gl, &[]), 0);
    assert_eq!(gl.world().runners.len(), 2);
    assert_eq!(
        gl.world()
            .lines()
            .iter()
            .filter(|l| *l == "POST /runners")
            .count(),
        1
    );
}

#[test]
fn transient_failures_are_retried() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    gl.world().requests.clear();
    gl.world().fault(
        None,
        "/runners/verify",
        FaultKind::Status {
            status: 503,
            retry_after: Some(0),
        },
        1,
    );
    gl.world().fault(
        None,
        "/runners/verify",
        FaultKind::Status {
            status: 429,
            retry_after: Some(1),
        },
        1,
    );
    gl.world()
        .fault(None, "/runners/verify", FaultKind::Drop, 1);
    let before = p.snapshot("config.toml");
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert_eq!(gl.world().lines().len(), 5, "3 failures + 2 good verifies");
    assert!(r.stderr.contains("retrying in"), "{r:?}");
    assert_eq!(p.snapshot("config.toml"), before);
}

#[test]
fn a_create_answered_502_by_a_proxy_is_repeated() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    fail_next_create(&gl, 502, None);
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert_eq!(
        gl.world().lines(),
        vec!["POST /runners", "POST /runners", "POST /runners"],
        "the refused create is sent again"
    );
    assert_eq!(gl.world().runners.len(), 2, "no duplicate");
    assert!(p.exists("config.toml"));
}

#[test]
fn unreachable_gitlab_exits_69_or_keeps_config_with_offline_ok() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let before = (p.snapshot("config.toml"), p.snapshot("runner-data.json"));
    // a port nobody listens on
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{closed}");
    let r = run_at(&p, &url, &["--wait", "1s"]);
    assert_code(&r, 69);
    assert!(r.stderr.contains("POST /runners/verify"), "{r:?}");
    assert!(r.stderr.contains("gave up after"), "{r:?}");
    let r = run_at(&p, &url, &["--wait", "1s", "--offline-ok"]);
    assert_code(&r, 0);
    assert!(r.stderr.contains("keeping the existing"), "{r:?}");
    assert_eq!(
        (p.snapshot("config.toml"), p.snapshot("runner-data.json")),
        before
    );
}

#[test]
fn junk_answers_are_clear_errors_that_change_nothing() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let before = (p.snapshot("config.toml"), p.snapshot("runner-data.json"));
    let cases = [
        (
            FaultKind::Raw {
                status: 200,
                content_type: "text/html".into(),
                body: "<html><body>Sign in</body></html>".into(),
            },
            65,
            "HTML page",
        ),
        (
            FaultKind::Raw {
                status: 200,
                content_type: "application/json".into(),
                body: "{\"id\": 1, \"tok".into(),
            },
            65,
            "unreadable body",
        ),
        (
            FaultKind::Raw {
                status: 302,
                content_type: "text/html".into(),
                body: String::new(),
            },
            65,
            "redirected",
        ),
        (
            FaultKind::Raw {
                status: 418,
                content_type: "application/json".into(),
                body: "{\"message\":\"teapot\"}".into(),
            },
            65,
            "418 teapot",
        ),
        (
            FaultKind::Status {
                status: 500,
                retry_after: None,
            },
            69,
            "500 Internal Server Error",
        ),
    ];
    for (fault, code, want) in cases {
        gl.world().fault(None, "/runners/verify", fault, 100);
        let r = run(&p, &gl, &["--wait", "1s"]);
        assert_code(&r, code);
        assert!(r.stderr.contains(want), "want {want}: {r:?}");
        assert!(r.stderr.contains("POST /runners/verify"), "{r:?}");
        assert_eq!(
            (p.snapshot("config.toml"), p.snapshot("runner-data.json")),
            before
        );
        assert_no_secrets(&r, &gl);
        gl.world().faults.clear();
    }
}

#[test]
fn bad_state_file_is_a_clear_error() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write("runner-data.json", "{\"shell\": {\"id\": 1,");
    let r = run(&p, &gl, &[]);
    assert_code(&r, 65);
    assert!(
        r.stderr.contains(&format!(
            "failed to read {}",
            path_str(&p.path("runner-data.json"))
        )),
        "{r:?}"
    );
    assert!(gl.world().requests.is_empty());
}

#[test]
fn a_second_run_waits_for_the_lock_then_fails() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p.path(".gitlab-runner-auth.lock"))
        .unwrap();
    lock.lock().unwrap();
    let r = run(&p, &gl, &["--wait", "1s"]);
    assert_code(&r, 75);
    assert!(
        r.stderr.contains("another gitlab-runner-auth holds"),
        "{r:?}"
    );
    assert!(gl.world().requests.is_empty());
    drop(lock);
    assert_code(&run(&p, &gl, &[]), 0);
}

#[test]
fn a_huge_retry_after_gives_up_instead_of_panicking() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    gl.world().fault(
        None,
        "/runners/verify",
        FaultKind::Status {
            status: 429,
            retry_after: Some(u64::MAX),
        },
        1,
    );
    let r = run(&p, &gl, &[]);
    assert_code(&r, 69);
    assert!(r.stderr.contains("gave up after 1 attempt"), "{r:?}");
}

#[test]
fn unwritable_config_path_exits_73_keeping_the_state() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let missing = p.path("no-such-dir/config.toml");
    let r = run(&p, &gl, &["--config", &path_str(&missing)]);
    assert_code(&r, 73);
    assert!(
        r.stderr.contains(&format!(
            "failed to write {}: its directory",
            path_str(&missing)
        )),
        "{r:?}"
    );
    // found before GitLab issued any token
    assert!(gl.world().requests.is_empty());
    assert!(!p.exists("runner-data.json"));
    assert_code(&run(&p, &gl, &[]), 0);
}
