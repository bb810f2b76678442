// SPDX-License-Identifier: MIT
//! A boot-time agent's worst morning: proxy errors on calls that issue
//! tokens, answers lost after GitLab acted, a full disk, an unwritable
//! state directory, temporary files a killed run left, and SIGTERM.

use crate::support::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

fn pat_prefix(admin: &str) -> Prefix {
    let p = Prefix::standard(admin);
    p.write("access-token", ADMIN_PAT);
    p
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

/// Every token in config.toml is a runner's current token in GitLab.
fn config_tokens_valid(p: &Prefix, gl: &FakeGitlab) -> bool {
    let table: toml::Table = p.read("config.toml").parse().unwrap();
    let w = gl.world();
    table["runners"].as_array().unwrap().iter().all(|r| {
        let t = r["token"].as_str().unwrap();
        w.runners.values().any(|x| x.token == t)
    })
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
