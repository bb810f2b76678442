// SPDX-License-Identifier: MIT
//! `--metrics-file`: what `run` and `status` write for node_exporter's
//! textfile collector, a failed run included, checked line by line and by
//! a real parser of the text format: Python's `prometheus_client` (installed
//! with pip under target/ when missing), and `promtool check metrics` too
//! when it is on `PATH`. And where the file goes: the status service's
//! default path in Debian's own layout, scraped from the real
//! `prometheus-node-exporter` (`make deps` installs it), and the paths that
//! could redirect the write (a symlink on the way or at the path, a FIFO,
//! another user's file, a directory others can write, an attacker swapping
//! a directory they own).

use crate::support::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
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

// ---- where the file goes: Debian's node_exporter, and paths that could
// redirect the write ---------------------------------------------------------

/// The families `status` writes (all of `metrics.rs` but
/// `last_run_actions`, which only `run` has).
const STATUS_FAMILIES: [&str; 8] = [
    "gitlab_runner_auth_last_run_timestamp_seconds",
    "gitlab_runner_auth_last_run_duration_seconds",
    "gitlab_runner_auth_last_run_success",
    "gitlab_runner_auth_last_run_exit_code",
    "gitlab_runner_auth_runner_info",
    "gitlab_runner_auth_runner_token_valid",
    "gitlab_runner_auth_runner_token_expiry_timestamp_seconds",
    "gitlab_runner_auth_access_token_expiry_timestamp_seconds",
];

/// Debian's node_exporter, as `prometheus-node-exporter` installs it.
const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

/// The `--metrics-file` gitlab-runner-auth-status.service passes by default.
fn status_unit_default() -> PathBuf {
    let unit = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/gitlab-runner-auth-status.service"
    );
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(
        text.contains("\nExecStart=/usr/bin/gitlab-runner-auth status --metrics-file ${GITLAB_RUNNER_AUTH_METRICS_FILE}\n"),
        "{text}"
    );
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("Environment=GITLAB_RUNNER_AUTH_METRICS_FILE="))
        .unwrap_or_else(|| panic!("no default metrics file in {unit}"));
    PathBuf::from(path)
}

/// A sample: its name, its labels (sorted) and its value.
type Sample = (String, Vec<(String, String)>, f64);

/// Each sample of the text exposition `text` whose name starts with
/// `prefix`. Label values unescaped.
fn samples(text: &str, prefix: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(prefix)) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        let (name, mut labels) = match series.split_once('{') {
            None => (series.to_string(), Vec::new()),
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').unwrap();
                let mut labels = Vec::new();
                let mut chars = rest.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                    assert_eq!(chars.next(), Some('"'), "{line}");
                    let mut v = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => break,
                            '\\' => match chars.next() {
                                Some('n') => v.push('\n'),
                                Some(c) => v.push(c),
                                None => panic!("{line}"),
                            },
                            c => v.push(c),
                        }
                    }
                    labels.push((key.trim_start_matches(',').to_string(), v));
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                }
                (name.to_string(), labels)
            }
        };
        labels.sort();
        out.push((name, labels, value));
    }
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

/// `GET /metrics` from `addr`; `None` until it answers 200.
fn scrape(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

/// Kills and reaps the child when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Puts back what was at a path before the test (or nothing), when dropped.
struct Restore(PathBuf, Option<Vec<u8>>);

impl Drop for Restore {
    fn drop(&mut self) {
        match &self.1 {
            Some(bytes) => {
                let _ = std::fs::write(&self.0, bytes);
            }
            None => {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }
}

/// Start Debian's node_exporter with only the textfile collector reading
/// `dir`, on a free loopback port; its address once it answers, and
/// the process (killed when dropped).
fn node_exporter(dir: &Path, log: &Path) -> (String, Reaped) {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let child = Command::new(NODE_EXPORTER)
        .args(["--collector.disable-defaults", "--collector.textfile"])
        .arg(format!("--collector.textfile.directory={}", dir.display()))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start node_exporter");
    let mut child = Reaped(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while scrape(&addr).is_none() {
        if let Some(st) = child.0.try_wait().unwrap() {
            panic!(
                "node_exporter exited ({st}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node_exporter did not answer on {addr}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (addr, child)
}

/// Hold an exclusive lock for the node_exporter directory while a test
/// writes there (another test process may run the same test).
fn lock_node_exporter_dir() -> std::fs::File {
    let path = std::env::temp_dir().join("gitlab-runner-auth-it-node-exporter.lock");
    let file = std::fs::File::create(path).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while file.try_lock().is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "another test held the node_exporter lock for 120s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    file
}

/// The status service's default path, in Debian's own layout (where the
/// package makes /var/lib/prometheus the prometheus user's), read by the
/// real node_exporter: every family arrives, and the collector saw no
/// error.
#[test]
fn the_status_service_default_reaches_debians_node_exporter() {
    if !Path::new(NODE_EXPORTER).exists() {
        let apt = Path::new("/usr/bin/apt-get").exists();
        assert!(
            !apt,
            "{NODE_EXPORTER} is missing: run make deps (it installs prometheus-node-exporter)"
        );
        eprintln!("skipped: no {NODE_EXPORTER} and no apt-get to install prometheus-node-exporter");
        return;
    }
    if !is_root() {
        eprintln!("skipped: not root, and only root writes node_exporter's directory");
        return;
    }
    let file = status_unit_default();
    let dir = file.parent().unwrap().to_path_buf();
    let _lock = lock_node_exporter_dir();
    let _restore = Restore(file.clone(), std::fs::read(&file).ok());
    let _ = std::fs::remove_file(&file);

    let mut world = World::default();
    world.token_interval = Some(30 * 86_400);
    let gl = FakeGitlab::start(world);
    gl.world().pats.get_mut(ADMIN_PAT).unwrap().expires_at = Some(date_in(10));
    let p = pat_prefix(REGISTRATION_TOKEN);
    assert_code(&run(&p, &gl, &[]), 0);
    let r = run(&p, &gl, &["status", "--metrics-file", &path_str(&file)]);
    assert_code(&r, 0);
    assert!(!r.stderr.contains("metrics"), "{r:?}");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid()),
        (0o644, 0),
        "root's, 0644"
    );
    let written = samples(&text, "gitlab_runner_auth_");
    let mut families: Vec<&str> = written.iter().map(|s| s.0.as_str()).collect();
    families.dedup();
    let mut want = STATUS_FAMILIES.to_vec();
    want.sort();
    families.sort();
    assert_eq!(families, want, "{text}");

    let (addr, _node_exporter) = node_exporter(&dir, &p.path("node-exporter.log"));
    let body = scrape(&addr).expect("scrape");
    // every sample of the file, as node_exporter serves it
    let served: Vec<_> = samples(&body, "gitlab_runner_auth_")
        .into_iter()
        .filter(|s| written.iter().any(|w| (&w.0, &w.1) == (&s.0, &s.1)))
        .collect();
    assert_eq!(served, written, "{body}");
    for family in STATUS_FAMILIES {
        assert!(
            body.contains(&format!("\n# TYPE {family} gauge\n")),
            "{family}: {body}"
        );
    }
    let error = samples(&body, "node_textfile_scrape_error");
    assert_eq!(
        error,
        [("node_textfile_scrape_error".into(), vec![], 0.0)],
        "{body}"
    );
    let mtime = samples(&body, "node_textfile_mtime_seconds");
    assert!(
        mtime
            .iter()
            .any(|(_, l, _)| l.iter().any(|(k, v)| k == "file" && v.ends_with(FILE))),
        "{body}"
    );
}

/// A prefix whose runners exist (a first run made them), so `status`
/// exits 0.
fn registered(gl: &FakeGitlab) -> Prefix {
    let p = pat_prefix(REGISTRATION_TOKEN);
    assert_code(&run(&p, gl, &[]), 0);
    p
}

/// The status run the tests below make, with `--metrics-file file`.
fn status_into(p: &Prefix, gl: &FakeGitlab, file: &Path) -> Run {
    let r = run(p, gl, &["status", "--metrics-file", &path_str(file)]);
    assert_code(&r, 0);
    r
}

/// `--metrics-file` on a run: a symlink at the path is replaced, its
/// target kept; a FIFO does not hang; a file of another user is not
/// replaced (warned about).
#[test]
fn a_symlink_or_fifo_at_the_metrics_path_is_replaced_and_another_users_file_kept() {
    root_only!();
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(ADMIN_PAT);
    let dir = p.path("m");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("gra.prom");
    let f = path_str(&file);
    // symlink to a file elsewhere
    let victim = p.path("victim");
    p.write("victim", "keep\n");
    std::os::unix::fs::symlink(&victim, &file).unwrap();
    let r = run(&p, &gl, &["--metrics-file", &f]);
    assert_code(&r, 0);
    assert_eq!(p.read("victim"), "keep\n");
    assert!(std::fs::symlink_metadata(&file).unwrap().is_file());
    // FIFO
    std::fs::remove_file(&file).unwrap();
    mkfifo(&file);
    let r = run(&p, &gl, &["--metrics-file", &f]);
    assert_code(&r, 0);
    assert!(
        !std::fs::symlink_metadata(&file)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    // owned by another user: not replaced (warned)
    std::fs::remove_file(&file).unwrap();
    std::fs::write(&file, "theirs\n").unwrap();
    std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
    let r = run(&p, &gl, &["--metrics-file", &f]);
    eprintln!("{r:?}");
    assert_code(&r, 0);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "theirs\n");
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), 65534);
}

/// `--metrics-file` on a run, in a directory others can write (no sticky
/// bit): not written (others could swap the file), warned about; the run
/// stands.
#[test]
fn a_run_never_writes_metrics_in_a_directory_others_can_write() {
    root_only!();
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(ADMIN_PAT);
    let dir = p.path("m");
    std::fs::create_dir(&dir).unwrap();
    chmod(&p.dir, 0o755);
    chmod(&dir, 0o777);
    let file = dir.join("gra.prom");
    let r = run(&p, &gl, &["--metrics-file", &path_str(&file)]);
    eprintln!("{r:?}");
    assert_code(&r, 0);
    assert!(!file.exists(), "not written where others could swap it");
    assert!(
        r.stderr.contains(&format!(
            "refusing {}: it is writable by group or others",
            path_str(&dir)
        )),
        "{r:?}"
    );
}

/// A symlink on the way to the file is refused, naming it and the real
/// path to use; nothing is written where it leads.
#[test]
fn metrics_through_a_symlinked_directory_are_refused() {
    let gl = FakeGitlab::start(World::default());
    let p = registered(&gl);
    let target = p.path("elsewhere");
    std::fs::create_dir(&target).unwrap();
    let link = p.path("node-exporter");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let file = link.join(FILE);
    let r = status_into(&p, &gl, &file);
    let real = std::fs::canonicalize(&target).unwrap();
    let want = format!(
        "refusing {}: it is a symbolic link, and {} is written only through real directories; fix it with: --metrics-file {}/{FILE}; the metrics in {1} were not updated",
        link.display(),
        file.display(),
        real.display()
    );
    assert!(r.stderr.lines().any(|l| l.ends_with(&want)), "{r:?}");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    // the fix it names works
    status_into(&p, &gl, &real.join(FILE));
    let text = std::fs::read_to_string(target.join(FILE)).unwrap();
    assert!(text.contains("gitlab_runner_auth_last_run_success{command=\"status\"} 1\n"));
}

/// A directory on the way that others can write without the sticky bit is
/// refused (they could rename what lies below it); sticky, it is fine.
#[test]
fn metrics_under_a_directory_others_can_write_are_refused() {
    let gl = FakeGitlab::start(World::default());
    let p = registered(&gl);
    let open = p.path("open");
    let dir = open.join("node-exporter");
    std::fs::create_dir_all(&dir).unwrap();
    chmod(&open, 0o777);
    let file = dir.join(FILE);
    let r = status_into(&p, &gl, &file);
    let want = format!(
        "refusing {}: it is writable by group or others without the sticky bit (mode 0777), so they could replace {}; fix it with: chmod go-w {0}; the metrics in {1} were not updated",
        open.display(),
        file.display()
    );
    assert!(r.stderr.lines().any(|l| l.ends_with(&want)), "{r:?}");
    assert!(!file.exists());
    chmod(&open, 0o1777);
    let r = status_into(&p, &gl, &file);
    assert!(!r.stderr.contains("metrics"), "{r:?}");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o644);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("gitlab_runner_auth_")
    );
}

/// An attacker (uid 65534) who owns a directory on the way swaps it for a
/// symlink to a directory of root's: refused when the swap came first;
/// while they swap it back and forth, each write is refused or lands in
/// the directory the walk pinned, never where the symlink leads.
#[test]
fn an_attacker_swapping_a_directory_they_own_cannot_redirect_the_metrics() {
    root_only!();
    let gl = FakeGitlab::start(World::default());
    let p = registered(&gl);
    chmod(&p.dir, 0o755);
    let theirs = p.path("theirs");
    let victim = p.path("victim");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::create_dir(&victim).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let t = path_str(&theirs);
    let v = path_str(&victim);
    as_nobody(&format!("mkdir -m 755 {t}/d"));
    let file = theirs.join("d").join(FILE);
    // their directory is fine while it is a directory
    let r = status_into(&p, &gl, &file);
    assert!(!r.stderr.contains("metrics"), "{r:?}");
    let written = std::fs::read(&file).unwrap();
    assert!(String::from_utf8_lossy(&written).contains("gitlab_runner_auth_"));
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o7777, 0o644);
    std::fs::remove_file(&file).unwrap();

    // swapped before the run: refused, naming it
    as_nobody(&format!("mv {t}/d {t}/d.real && ln -s {v} {t}/d"));
    let r = status_into(&p, &gl, &file);
    let refusal = format!(
        "refusing {}: it is a symbolic link",
        theirs.join("d").display()
    );
    assert!(r.stderr.contains(&refusal), "{r:?}");
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
    as_nobody(&format!("rm {t}/d && mv {t}/d.real {t}/d"));

    // swapped back and forth during the runs
    let stop = p.path("stop");
    let attacker = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg(format!(
            "cd {t} && end=$(($(date +%s) + 60)); \
             while [ ! -e {stop} ] && [ $(date +%s) -lt $end ]; do \
             mv d d.real; ln -s {v} d; rm d; mv d.real d; done",
            stop = path_str(&stop)
        ))
        .spawn()
        .expect("setpriv");
    let mut attacker = Reaped(attacker);
    let (mut landed, mut refused) = (0, 0);
    for _ in 0..25 {
        let r = status_into(&p, &gl, &file);
        assert_eq!(
            std::fs::read_dir(&victim).unwrap().count(),
            0,
            "written through the attacker's symlink: {r:?}"
        );
        if r.stderr.contains("the metrics in") {
            refused += 1;
        } else {
            landed += 1;
        }
    }
    std::fs::write(&stop, "").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while attacker.0.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    eprintln!("{landed} written, {refused} refused");
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
    // whatever was written is in their real directory, whole, 0644
    let real = ["d", "d.real"]
        .iter()
        .map(|n| theirs.join(n))
        .find(|d| std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()))
        .unwrap();
    let names: Vec<String> = std::fs::read_dir(&real)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), usize::from(landed > 0), "{names:?}");
    if landed > 0 {
        assert_eq!(names, [FILE]);
        let meta = std::fs::metadata(real.join(FILE)).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o644, 0));
        assert!(
            std::fs::read_to_string(real.join(FILE))
                .unwrap()
                .ends_with('\n')
        );
    }
}
