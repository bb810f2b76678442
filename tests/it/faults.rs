// SPDX-License-Identifier: MIT
//! A boot-time agent's worst morning: proxy errors on calls that issue
//! tokens, answers lost after GitLab acted, a full disk, an unwritable
//! state directory, temporary files a killed run left, and SIGTERM; and
//! transient failures retried, an unreachable GitLab, junk answers, a bad
//! state file, a lock another run holds, an unwritable `config.toml`.

use crate::support::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

/// How many runners GitLab holds described `node12-<ty>`.
fn count(gl: &FakeGitlab, ty: &str) -> usize {
    let want = format!("{HOST}-{ty}");
    gl.world()
        .runners
        .values()
        .filter(|r| r.description == want)
        .count()
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
            count(&gl, "batch") + count(&gl, "shell"),
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
        assert_eq!(
            (count(&gl, "batch"), count(&gl, "shell")),
            (1, 1),
            "{then:?}: {r:?}"
        );
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
    assert_eq!(count(&gl, "batch") + count(&gl, "shell"), 3);
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
    gl.world().fault(
        Some("POST"),
        "/runners",
        FaultKind::Status {
            status: 502,
            retry_after: None,
        },
        1,
    );
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
