// SPDX-License-Identifier: MIT
//! The log format the real binary writes: under journald (`JOURNAL_STREAM`
//! naming stderr) `<N>` priority prefixes with no timestamp, level word or
//! module path; elsewhere simple_logger's format with a short component and
//! no colour when stderr is not a terminal.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_gitlab-runner-auth");

/// A fresh 0700 prefix; `admin_mode` set → an admin-token with that mode.
fn prefix(name: &str, admin_mode: Option<u32>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gra-logging-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/examples/config.template");
    std::fs::copy(example, dir.join("config.template")).unwrap();
    if let Some(mode) = admin_mode {
        let token = dir.join("admin-token");
        std::fs::write(&token, "glpat-0123456789abcdefghij\n").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    dir
}

/// Runs the binary with a clean environment and stderr in a file; `journal`
/// → `JOURNAL_STREAM` names that file, as systemd names the journal's socket.
/// Returns (exit code, stderr).
fn run(dir: &Path, args: &[&str], journal: Option<&str>) -> (i32, String) {
    let err_path = dir.join("stderr");
    let err = std::fs::File::create(&err_path).unwrap();
    let meta = err.metadata().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .arg("--prefix")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    match journal {
        Some("stderr") => cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino())),
        Some(other) => cmd.env("JOURNAL_STREAM", other),
        None => &mut cmd,
    };
    let code = cmd.status().unwrap().code().unwrap();
    (code, std::fs::read_to_string(&err_path).unwrap())
}

const API: &[&str] = &["--api-url", "https://gitlab.example.com"];

#[test]
fn under_journald_each_line_starts_with_its_priority_and_nothing_else() {
    let dir = prefix("journal", Some(0o644));
    let (code, err) = run(&dir, API, Some("stderr"));
    assert_eq!(code, 77, "{err}");
    let admin = dir.join("admin-token");
    let admin = admin.display();
    assert_eq!(
        err,
        format!(
            "<3>refusing {admin}: it is accessible by group or others (mode 0644); fix it with: chmod 600 {admin}\n"
        )
    );

    let (code, err) = run(&dir, &[], Some("stderr"));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.starts_with("<6>not configured: no GitLab API URL"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn on_a_terminal_lines_carry_a_timestamp_the_level_and_a_short_component() {
    let dir = prefix("terminal", Some(0o644));
    // a JOURNAL_STREAM that is not our stderr (inherited, stderr redirected)
    // keeps this format too
    for journal in [None, Some("8:1")] {
        let (code, err) = run(&dir, API, journal);
        assert_eq!(code, 77, "{err}");
        let (stamp, rest) = err.split_once(' ').unwrap();
        assert!(
            stamp.len() >= 20 && stamp.as_bytes()[4] == b'-' && stamp.contains('T'),
            "timestamp first: {err}"
        );
        assert!(
            rest.starts_with("ERROR [gitlab-runner-auth] refusing "),
            "{err}"
        );
        assert!(!err.contains('\x1b'), "no colour into a file: {err:?}");

        let (code, err) = run(&dir, &[], journal);
        assert_eq!(code, 0, "{err}");
        assert!(
            err.contains(" INFO  [reconcile] not configured: no GitLab API URL"),
            "{err}"
        );
        assert!(!err.contains("gitlab_runner_auth"), "no module path: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
