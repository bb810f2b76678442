// SPDX-License-Identifier: MIT
//! `--metrics-file`: what `run` and `status` write for node_exporter's
//! textfile collector, a failed run included, checked line by line and by
//! a real parser of the text format: Python's `prometheus_client` (installed
//! with pip under target/ when missing), and `promtool check metrics` too
//! when it is on `PATH`.

use crate::support::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const FILE: &str = "gitlab-runner-auth.prom";

/// A date `days` from now, as GitLab shows a token's `expires_at`.
fn date_in(days: i64) -> String {
    let t = gitlab_runner_auth::clock::now() + days * 86_400;
    gitlab_runner_auth::clock::format(t)[..10].to_string()
}

/// Run with `--metrics-file` in a directory of its own; the file's text.
fn run_metrics(p: &Prefix, gl: &FakeGitlab, args: &[&str]) -> (Run, Option<String>) {
    let dir = p.path("node-exporter");
    let _ = std::fs::create_dir(&dir);
    let file = dir.join(FILE);
    let _ = std::fs::remove_file(&file);
    let mut all = args.to_vec();
    let f = path_str(&file);
    all.extend(["--metrics-file", &f]);
    let r = run(p, gl, &all);
    (r, std::fs::read_to_string(&file).ok())
}

/// The value of the sample `series` (name and labels exactly as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap_or_else(|e| panic!("{series}: {v}: {e}")))
}

/// Checks every metrics file must pass: mode 0644, no temporary file left,
/// no secret, and the format as a real parser reads it.
fn check_file(p: &Prefix, gl: &FakeGitlab, text: &str) {
    let dir = p.path("node-exporter");
    let meta = std::fs::metadata(dir.join(FILE)).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o644, "metrics mode");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [FILE], "no temporary file left");
    let as_run = Run {
        code: 0,
        stdout: text.to_string(),
        stderr: String::new(),
    };
    assert_no_secrets(&as_run, gl);
    parse(&dir.join(FILE), text);
}

const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in fam.samples:
        out.append([fam.name, fam.type, fam.documentation, s.name, s.labels, s.value])
print(json.dumps(out))
"#;

/// `python3` and the `PYTHONPATH` under which it imports `prometheus_client`:
/// as installed, else from a `pip install --target` under target/ (once).
/// `Err`: why neither works.
fn python() -> &'static Result<(PathBuf, Option<PathBuf>), String> {
    static PY: OnceLock<Result<(PathBuf, Option<PathBuf>), String>> = OnceLock::new();
    PY.get_or_init(|| {
        let py = PathBuf::from("python3");
        let imports = |path: Option<&Path>| {
            let mut c = Command::new(&py);
            c.args(["-c", "import prometheus_client.parser"]);
            if let Some(p) = path {
                c.env("PYTHONPATH", p);
            }
            c.output().is_ok_and(|o| o.status.success())
        };
        if imports(None) {
            return Ok((py, None));
        }
        let lib = Path::new(env!("CARGO_TARGET_TMPDIR")).join("metrics-pylib");
        if imports(Some(&lib)) {
            return Ok((py, Some(lib)));
        }
        let out = Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--timeout", "30", "--retries", "1", "--target"])
            .arg(&lib)
            .arg("prometheus_client")
            .output()
            .map_err(|e| format!("python3: {e}"))?;
        if imports(Some(&lib)) {
            Ok((py, Some(lib)))
        } else {
            Err(format!(
                "pip install prometheus_client failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    })
}

/// Parse `file` with `prometheus_client` (and `promtool`, when on `PATH`):
/// every sample line of `text` is a sample it reads, with the same value,
/// and every family is a documented gauge.
fn parse(file: &Path, text: &str) {
    if let Ok(out) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(file).unwrap())
        .output()
    {
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "promtool check metrics: {said}\n{text}"
        );
    }
    let (py, path) = match python() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("metrics: not parsed with prometheus_client: {why}");
            return;
        }
    };
    let mut c = Command::new(py);
    c.args(["-c", PARSE]).arg(file);
    if let Some(p) = path {
        c.env("PYTHONPATH", p);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(parsed.len(), lines.len(), "{parsed:?}\n{text}");
    for (s, line) in parsed.iter().zip(&lines) {
        assert_eq!(s[1], "gauge", "{s}");
        assert!(!s[2].as_str().unwrap().is_empty(), "no HELP: {s}");
        let name = s[3].as_str().unwrap();
        assert!(name.starts_with("gitlab_runner_auth_"), "{s}");
        assert!(line.starts_with(&format!("{name}{{")), "{s} vs {line}");
        let (_, v) = line.rsplit_once(' ').unwrap();
        assert_eq!(s[5].as_f64(), v.parse::<f64>().ok(), "{s} vs {line}");
        for (k, v) in s[4].as_object().unwrap() {
            let v = v
                .as_str()
                .unwrap()
                .replace('\\', r"\\")
                .replace('"', "\\\"");
            assert!(line.contains(&format!("{k}=\"{v}\"")), "{s} vs {line}");
        }
    }
}

#[test]
fn run_writes_metrics_0644_and_status_rewrites_them() {
    let mut world = World::default();
    world.token_interval = Some(30 * 86_400);
    let gl = FakeGitlab::start(world);
    gl.world().pats.get_mut(ADMIN_PAT).unwrap().expires_at = Some(date_in(10));
    let p = pat_prefix(REGISTRATION_TOKEN);
    let before = gitlab_runner_auth::clock::now();
    let (r, text) = run_metrics(&p, &gl, &[]);
    assert_code(&r, 0);
    let text = text.unwrap_or_else(|| panic!("no metrics file: {r:?}"));
    check_file(&p, &gl, &text);
    assert_no_secrets(&r, &gl);
    let at = sample(
        &text,
        r#"gitlab_runner_auth_last_run_timestamp_seconds{command="run"}"#,
    );
    let at = at.unwrap() as i64;
    assert!(
        at >= before && at <= gitlab_runner_auth::clock::now(),
        "{at}"
    );
    let s = |series: &str| sample(&text, series);
    assert!(s(r#"gitlab_runner_auth_last_run_duration_seconds{command="run"}"#).unwrap() < 5.0);
    assert_eq!(
        s(r#"gitlab_runner_auth_last_run_success{command="run"}"#),
        Some(1.0)
    );
    assert_eq!(
        s(r#"gitlab_runner_auth_last_run_exit_code{command="run"}"#),
        Some(0.0)
    );
    let action = |a: &str| {
        s(&format!(
            r#"gitlab_runner_auth_last_run_actions{{command="run",action="{a}"}}"#
        ))
    };
    assert_eq!(action("created"), Some(2.0));
    assert_eq!(action("verified"), Some(0.0));
    assert_eq!(action("taken_over"), Some(0.0));
    for ty in ["batch", "shell"] {
        let id = p.state_id(ty);
        let info = format!(r#"gitlab_runner_auth_runner_info{{type="{ty}",runner_id="{id}"}}"#);
        assert_eq!(s(&info), Some(1.0), "{text}");
        let valid = format!(r#"gitlab_runner_auth_runner_token_valid{{type="{ty}"}}"#);
        assert_eq!(s(&valid), Some(1.0), "{text}");
        let expiry =
            format!(r#"gitlab_runner_auth_runner_token_expiry_timestamp_seconds{{type="{ty}"}}"#);
        let want = gl.world().runners[&id].token_expires_at.unwrap();
        assert_eq!(s(&expiry), Some(want as f64), "{text}");
    }
    let file = path_str(&p.path("access-token"));
    let pat = format!(
        r#"gitlab_runner_auth_access_token_expiry_timestamp_seconds{{file="{file}",role="access-token"}}"#
    );
    let exp = s(&pat).unwrap_or_else(|| panic!("{text}")) as i64;
    assert_eq!(exp % 86_400, 0, "a date: midnight UTC");
    assert!((exp - before - 10 * 86_400).abs() <= 86_400, "{exp}");

    // the next run verifies both
    let (r, text) = run_metrics(&p, &gl, &[]);
    assert_code(&r, 0);
    let text = text.unwrap();
    let verified = r#"gitlab_runner_auth_last_run_actions{command="run",action="verified"}"#;
    assert_eq!(sample(&text, verified), Some(2.0), "{text}");

    // status: its own command label, no actions
    let (r, text) = run_metrics(&p, &gl, &["status"]);
    assert_code(&r, 0);
    let text = text.unwrap();
    check_file(&p, &gl, &text);
    assert!(!text.contains(r#"command="run""#), "{text}");
    assert!(!text.contains("last_run_actions"), "{text}");
    let s = |series: &str| sample(&text, series);
    assert_eq!(
        s(r#"gitlab_runner_auth_last_run_success{command="status"}"#),
        Some(1.0)
    );
    assert_eq!(
        s(r#"gitlab_runner_auth_runner_token_valid{type="shell"}"#),
        Some(1.0)
    );
    assert_eq!(s(&pat), Some(exp as f64));

    // a token GitLab no longer knows: status exits 77 and says so
    let id = p.state_id("shell");
    gl.world().rotate(id);
    let (r, text) = run_metrics(&p, &gl, &["status"]);
    assert_code(&r, 77);
    let text = text.unwrap();
    check_file(&p, &gl, &text);
    let s = |series: &str| sample(&text, series);
    assert_eq!(
        s(r#"gitlab_runner_auth_last_run_success{command="status"}"#),
        Some(0.0)
    );
    assert_eq!(
        s(r#"gitlab_runner_auth_last_run_exit_code{command="status"}"#),
        Some(77.0)
    );
    assert_eq!(
        s(r#"gitlab_runner_auth_runner_token_valid{type="shell"}"#),
        Some(0.0)
    );
    assert_eq!(
        s(r#"gitlab_runner_auth_runner_token_valid{type="batch"}"#),
        Some(1.0)
    );
    let info = format!(r#"gitlab_runner_auth_runner_info{{type="shell",runner_id="{id}"}}"#);
    assert_eq!(s(&info), Some(1.0), "{text}");
}

#[test]
fn a_failed_run_writes_its_failure_and_what_it_saw() {
    // registration tokens disabled: nothing can be created (exit 78)
    let mut world = World::default();
    world.registration_enabled = false;
    world.token_interval = Some(30 * 86_400);
    let gl = FakeGitlab::start(world);
    let p = pat_prefix(REGISTRATION_TOKEN);
    let (r, text) = run_metrics(&p, &gl, &[]);
    assert_code(&r, 78);
    let text = text.unwrap_or_else(|| panic!("no metrics file: {r:?}"));
    check_file(&p, &gl, &text);
    let s = |series: &str| sample(&text, series);
    assert_eq!(
        s(r#"gitlab_runner_auth_last_run_success{command="run"}"#),
        Some(0.0)
    );
    assert_eq!(
        s(r#"gitlab_runner_auth_last_run_exit_code{command="run"}"#),
        Some(78.0)
    );
    assert!(
        !text.contains("last_run_actions"),
        "it did not finish: {text}"
    );
    assert!(!text.contains("runner_info"), "no runner yet: {text}");
    for ty in ["batch", "shell"] {
        let valid = format!(r#"gitlab_runner_auth_runner_token_valid{{type="{ty}"}}"#);
        assert_eq!(s(&valid), Some(0.0), "{text}");
    }
    // the access token never expires: no sample
    assert!(
        !text.contains("access_token_expiry_timestamp_seconds{"),
        "{text}"
    );

    // GitLab unreachable: exit 69; the types as found (no token yet)
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let dir = p.path("node-exporter");
    let file = path_str(&dir.join(FILE));
    let r = run_at(&p, &closed, &["--wait", "1s", "--metrics-file", &file]);
    assert_code(&r, 69);
    let text = std::fs::read_to_string(&file).unwrap();
    check_file(&p, &gl, &text);
    let s = |series: &str| sample(&text, series);
    assert_eq!(
        s(r#"gitlab_runner_auth_last_run_exit_code{command="run"}"#),
        Some(69.0)
    );
    assert_eq!(
        s(r#"gitlab_runner_auth_runner_token_valid{type="shell"}"#),
        Some(0.0)
    );
    assert!(
        !text.contains("access_token_expiry_timestamp_seconds{"),
        "{text}"
    );
}

#[test]
fn metrics_that_cannot_be_written_only_warn_and_plan_writes_none() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let missing = path_str(&p.path("no-such-dir").join(FILE));
    let r = run(&p, &gl, &["--metrics-file", &missing]);
    assert_code(&r, 0);
    assert!(
        r.stderr
            .contains(&format!("the metrics in {missing} were not updated")),
        "{r:?}"
    );
    assert!(config_tokens_valid(&p, &gl));
    // plan and --dry-run change nothing, the metrics included
    let file = p.path(FILE);
    for args in [&["plan"][..], &["--dry-run"]] {
        let mut all = args.to_vec();
        let f = path_str(&file);
        all.extend(["--metrics-file", &f]);
        let r = run(&p, &gl, &all);
        assert_code(&r, 0);
        assert!(!file.exists(), "{args:?} wrote metrics");
    }
    // the environment variable, as the systemd units set it
    let mut c = command(&p);
    c.env("GITLAB_RUNNER_AUTH_METRICS_FILE", &file)
        .args(["status", "--api-url", &gl.url(), "--prefix"])
        .arg(&p.dir)
        .args(["--hostname", HOST]);
    assert_code(&run_cmd(c), 0);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        sample(
            &text,
            r#"gitlab_runner_auth_last_run_success{command="status"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn status_counts_a_token_gitlab_runner_rotated_itself_as_valid() {
    // the daily status timer runs while gitlab-runner rotates its tokens
    // (the template fills token_expires_at): config.toml then holds a
    // newer token than runner-data.json until the next run adopts it
    let mut world = World::default();
    world.token_interval = Some(30 * 86_400);
    let gl = FakeGitlab::start(world);
    let p = Prefix::standard(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let id = p.state_id("shell");
    let old = p.state_token("shell");
    let new = gl.world().rotate(id);
    let config = p.read("config.toml").replace(&old, &new);
    p.write("config.toml", &config);
    let (r, text) = run_metrics(&p, &gl, &["status"]);
    assert_code(&r, 0);
    let text = text.unwrap();
    let valid = r#"gitlab_runner_auth_runner_token_valid{type="shell"}"#;
    assert_eq!(sample(&text, valid), Some(1.0), "{text}");
    let expiry = r#"gitlab_runner_auth_runner_token_expiry_timestamp_seconds{type="shell"}"#;
    let want = gl.world().runners[&id].token_expires_at.unwrap();
    assert_eq!(sample(&text, expiry), Some(want as f64), "{text}");
    assert!(
        r.stdout.contains(&format!("…{}", &new[new.len() - 4..])),
        "the token in use: {r:?}"
    );
    assert_eq!(p.state_token("shell"), old, "status changes nothing");
    assert_no_secrets(&r, &gl);
}
