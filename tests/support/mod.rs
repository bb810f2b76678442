// SPDX-License-Identifier: MIT
//! Helpers for the integration tests: a scratch prefix per test, running the
//! real binary against the fake GitLab, and output checks.
#![allow(dead_code, unused_imports)]

pub mod fake_gitlab;
pub mod profiles;

pub use fake_gitlab::{
    ADMIN_PAT, FakeGitlab, FaultKind, Hook, Phase, Pid, REGISTRATION_TOKEN, Then, World,
};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const HOST: &str = "node12";

/// The template most tests use: both runner types, gitlab-runner's own
/// `id`/`token_obtained_at`/`token_expires_at` keys for `shell`; the URL is
/// the fake GitLab's host.
pub const TEMPLATE: &str = r#"concurrent = 2

[[runners]]
  name = "{hostname}-shell"
  url = "http://127.0.0.1"
  id = {shell.id}
  token = "{shell}"
  token_obtained_at = {shell.token_obtained_at}
  token_expires_at = {shell.token_expires_at}
  executor = "shell"

[[runners]]
  name = "{hostname}-batch"
  url = "http://127.0.0.1"
  token = "{batch.token}"
  executor = "shell"
"#;

/// The prefix's `config.template` with [`TEMPLATE`]'s `http://127.0.0.1`
/// made `url` (the fake GitLab's scheme, host and port), so that each
/// runner's url is the GitLab of `--api-url` and no run warns about it.
pub fn point_at(p: &Prefix, url: &str) {
    let text = p
        .read("config.template")
        .replace("\"http://127.0.0.1\"", &format!("\"{url}\""));
    p.write("config.template", &text);
}

/// A scratch prefix directory, removed when dropped.
pub struct Prefix {
    pub dir: PathBuf,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Prefix {
    pub fn new() -> Prefix {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("gra-it-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        Prefix { dir }
    }

    /// A prefix with `admin-token` and the standard template.
    pub fn standard(admin: &str) -> Prefix {
        let p = Prefix::new();
        p.write("admin-token", &format!("{admin}\n"));
        p.write("config.template", TEMPLATE);
        p
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn write(&self, name: &str, text: &str) {
        self.write_mode(name, text, 0o600);
    }

    pub fn write_mode(&self, name: &str, text: &str, mode: u32) {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    pub fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    pub fn mode(&self, name: &str) -> u32 {
        std::fs::metadata(self.path(name)).unwrap().mode() & 0o7777
    }

    /// (bytes, mtime in ns) of a file, to prove it was not rewritten.
    pub fn snapshot(&self, name: &str) -> (Vec<u8>, i128) {
        let m = std::fs::metadata(self.path(name)).unwrap();
        (
            std::fs::read(self.path(name)).unwrap(),
            i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        )
    }

    /// Every file name in the prefix (sorted), `bin` excluded.
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "bin")
            .collect();
        v.sort();
        v
    }

    /// runner-data.json as JSON.
    pub fn state(&self) -> serde_json::Value {
        serde_json::from_str(&self.read("runner-data.json")).unwrap()
    }

    /// The token runner-data.json holds for `ty`.
    pub fn state_token(&self, ty: &str) -> String {
        self.state()[ty]["token"].as_str().unwrap().to_string()
    }

    pub fn state_id(&self, ty: &str) -> u64 {
        self.state()[ty]["id"].as_u64().unwrap()
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gitlab-runner-auth")
}

/// The binary with a clean environment, `PATH` = the prefix's empty `bin`.
pub fn command(prefix: &Prefix) -> Command {
    let mut c = Command::new(bin());
    c.env_clear().env("PATH", prefix.path("bin"));
    c
}

pub fn run_cmd(mut c: Command) -> Run {
    let out = c.output().expect("run gitlab-runner-auth");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run the tool against `url` in `prefix` as host `node12`, plus `args`.
pub fn run_at(prefix: &Prefix, url: &str, args: &[&str]) -> Run {
    run_host(prefix, url, HOST, args)
}

/// Run the tool against `url` in `prefix` as host `host`, plus `args`
/// (`--timeout 5s` and `--wait 5s` unless `args` set them).
pub fn run_host(prefix: &Prefix, url: &str, host: &str, args: &[&str]) -> Run {
    let mut c = command(prefix);
    c.args(["--api-url", url, "--prefix"])
        .arg(&prefix.dir)
        .args(["--hostname", host]);
    default_limits(&mut c, args);
    c.args(args);
    run_cmd(c)
}

/// `--timeout 5s` and `--wait 5s`, each unless `args` give their own (an
/// option cannot be given twice).
fn default_limits(c: &mut Command, args: &[&str]) {
    for option in ["--timeout", "--wait"] {
        if !args.contains(&option) {
            c.args([option, "5s"]);
        }
    }
}

/// Like [`run`], with `hooks` set before the spawn: `(request number from
/// now, phase, signal for the tool, then)`.
pub fn run_hooked(
    prefix: &Prefix,
    gl: &FakeGitlab,
    args: &[&str],
    hooks: &[(usize, Phase, Option<&'static str>, Then)],
) -> Run {
    let pid: Pid = Default::default();
    {
        let mut w = gl.world();
        let base = w.runner_requests().count();
        for &(n, phase, signal, then) in hooks {
            w.hooks.push(Hook {
                nth: base + n,
                phase,
                signal: signal.map(|s| (pid.clone(), s)),
                then,
            });
        }
    }
    let mut c = command(prefix);
    c.args(["--api-url", &gl.url(), "--prefix"])
        .arg(&prefix.dir)
        .args(["--hostname", HOST]);
    default_limits(&mut c, args);
    c.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().expect("spawn gitlab-runner-auth");
    pid.store(child.id(), std::sync::atomic::Ordering::SeqCst);
    let out = child
        .wait_with_output()
        .expect("wait for gitlab-runner-auth");
    gl.world().hooks.clear();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn run(prefix: &Prefix, gl: &FakeGitlab, args: &[&str]) -> Run {
    run_at(prefix, &gl.url(), args)
}

/// Fail if any 10-character piece of a secret the fake knows appears in the
/// output (catches hex dumps and split lines, not just whole tokens). A
/// piece wholly inside the token's public prefix (what a mask shows, such
/// as `mycorp-glrt-t1_`) is no secret.
pub fn assert_no_secrets(r: &Run, gl: &FakeGitlab) {
    let out = r.output().replace(['\n', ' '], "");
    for s in gl.world().secrets() {
        let chars: Vec<char> = s.chars().collect();
        let mask = gitlab_runner_auth::secret::mask(&s);
        let public = mask.split('…').next().unwrap_or("").chars().count();
        for w in chars.windows(10).skip(public.saturating_sub(9)) {
            let piece: String = w.iter().collect();
            assert!(
                !out.contains(&piece),
                "{piece} of secret {s} leaked:\n{r:?}"
            );
        }
    }
}

pub fn assert_code(r: &Run, code: i32) {
    assert_eq!(r.code, code, "{r:?}");
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Whether the tests run as root: only then can another uid play the
/// attacker.
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Skips the rest of a test unless it runs as root.
macro_rules! root_only {
    () => {
        if !$crate::support::is_root() {
            eprintln!("skipped: not root, so no other uid can play the attacker");
            return;
        }
    };
}
pub(crate) use root_only;

/// Run `script` with `sh -c` as uid/gid 65534 without supplementary groups.
pub fn as_nobody(script: &str) {
    let st = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .status()
        .expect("setpriv");
    assert!(st.success(), "attacker script failed: {script}");
}

pub fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A FIFO at `p`.
pub fn mkfifo(p: &Path) {
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
}

/// A prefix with `admin-token` holding `admin`, an access token and the
/// standard template.
pub fn pat_prefix(admin: &str) -> Prefix {
    let p = Prefix::standard(admin);
    p.write("access-token", ADMIN_PAT);
    p
}

/// A stateless prefix: admin and access token, the standard template.
pub fn stateless_prefix() -> Prefix {
    pat_prefix(ADMIN_PAT)
}

/// Every request line is a verify.
pub fn verify_only(lines: &[String]) -> bool {
    lines.iter().all(|l| l == "POST /runners/verify")
}

/// Every request that changes something in GitLab, as lines.
pub fn writes(gl: &FakeGitlab) -> Vec<String> {
    gl.world()
        .requests
        .iter()
        .filter(|q| q.method != "GET" && q.path != "/runners/verify")
        .map(|q| q.line())
        .collect()
}

/// The next create (`POST /runners`) is answered 201 with `body` as JSON,
/// whatever it holds.
pub fn answer_next_create(gl: &FakeGitlab, body: &str) {
    gl.world().fault(
        Some("POST"),
        "/runners",
        FaultKind::Raw {
            status: 201,
            content_type: "application/json".into(),
            body: body.into(),
        },
        1,
    );
}

/// How many runners GitLab holds described `node12-<ty>`.
pub fn runners_of_type(gl: &FakeGitlab, ty: &str) -> usize {
    let want = format!("{HOST}-{ty}");
    gl.world()
        .runners
        .values()
        .filter(|r| r.description == want)
        .count()
}

/// How many runners GitLab holds of each type: (batch, shell).
pub fn runners_per_type(gl: &FakeGitlab) -> (usize, usize) {
    (runners_of_type(gl, "batch"), runners_of_type(gl, "shell"))
}

/// Every token in config.toml is a runner's current token in GitLab.
pub fn config_tokens_valid(p: &Prefix, gl: &FakeGitlab) -> bool {
    let table: toml::Table = p.read("config.toml").parse().unwrap();
    let w = gl.world();
    table["runners"].as_array().unwrap().iter().all(|r| {
        let t = r["token"].as_str().unwrap();
        w.runners.values().any(|x| x.token == t)
    })
}
