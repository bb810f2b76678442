// SPDX-License-Identifier: MIT
//! The installation: is the drop-in loaded for `gitlab-runner.service`
//! (`systemctl show`), does gitlab-runner read the `config.toml` this tool
//! writes (its `ExecStart`'s `--config`), and what the settings file sets.
//! The settings the service runs with are the settings file's (systemd
//! reads it; a shell does not), so `doctor` checks with them wherever the
//! command line and the environment set nothing.

use super::Report;
pub use super::creds::UnitCredential;
use crate::cli;
use crate::error::Kind;
use crate::settings::Settings;
use crate::trust::{self, Class};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The unit gitlab-runner's package writes.
pub const UNIT: &str = "gitlab-runner.service";
/// Our drop-in's file name, and where the packages put it.
const DROP_IN: &str = "50-gitlab-runner-auth.conf";
const VENDOR_DIR: &str = "usr/lib/systemd/system/gitlab-runner.service.d";
const ADMIN_DIR: &str = "etc/systemd/system/gitlab-runner.service.d";
/// The settings files the drop-in reads (`EnvironmentFile=-…`), in order:
/// a later one wins.
pub const SETTINGS_FILES: &[&str] = &[
    "etc/default/gitlab-runner-auth",
    "etc/sysconfig/gitlab-runner-auth",
];
/// Proxy variables the client reads (`ureq::Proxy::try_from_env`).
pub const PROXY_VARS: &[&str] = &["ALL_PROXY", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"];

/// What the installation checks learned, for the later ones.
#[derive(Debug, Default)]
pub struct Service {
    /// The settings to check with, when the settings file adds to those of
    /// the command line and the environment.
    pub settings: Option<Settings>,
    /// The settings file read (the last one, when both exist).
    pub file: Option<PathBuf>,
    /// The variables the settings files set.
    pub vars: BTreeMap<String, String>,
    /// The user gitlab-runner runs CI jobs as, and where that was read
    /// (`User=` of the unit, else `--user` of its `run`), when systemd said.
    pub job_user: Option<(String, &'static str)>,
    /// The credentials the unit passes in `$CREDENTIALS_DIRECTORY`
    /// (`LoadCredential=`, `LoadCredentialEncrypted=`), when systemd said.
    pub credentials: Vec<UnitCredential>,
}

/// What `systemctl show` says of the unit.
#[derive(Debug, Default)]
struct Unit {
    props: BTreeMap<String, String>,
    /// `LoadCredential=` and `LoadCredentialEncrypted=`, a line each.
    credentials: Vec<UnitCredential>,
    /// `systemctl show` printed them as `[unprintable]` (systemd 252 does):
    /// ask the bus.
    unprintable: bool,
}

/// One command of an `Exec*=` property.
#[derive(Debug, Clone, PartialEq)]
struct Exec {
    path: String,
    argv: Vec<String>,
    ignore_errors: bool,
}

impl Unit {
    fn get(&self, key: &str) -> &str {
        self.props.get(key).map_or("", String::as_str)
    }

    fn execs(&self, key: &str) -> Vec<Exec> {
        parse_execs(self.get(key))
    }
}

/// Parse `systemctl show` output (`KEY=VALUE` lines).
fn parse_show(text: &str) -> Unit {
    let lines: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let unprintable = lines
        .iter()
        .any(|(k, v)| k.starts_with("LoadCredential") && *v == "[unprintable]");
    let credentials = lines
        .iter()
        .filter(|(_, v)| *v != "[unprintable]")
        .filter_map(|(k, v)| UnitCredential::parse(k, v))
        .collect();
    let props = lines
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Unit {
        props,
        credentials,
        unprintable,
    }
}

/// The D-Bus object path of a unit: `gitlab_2drunner_2eservice`.
fn bus_path(unit: &str) -> String {
    let mut out = String::from("/org/freedesktop/systemd1/unit/");
    for (i, b) in unit.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (b.is_ascii_digit() && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// `LoadCredential` and `LoadCredentialEncrypted` of the unit from the
/// bus (`busctl --json=short get-property`, a line each:
/// `{"type":"a(ss)","data":[["admin-token","/etc/…"]]}`), for a
/// `systemctl show` that cannot print them.
fn bus_credentials() -> std::result::Result<Vec<UnitCredential>, String> {
    const PROPS: [&str; 2] = ["LoadCredential", "LoadCredentialEncrypted"];
    let path = bus_path(UNIT);
    let mut args = vec![
        "--json=short",
        "get-property",
        "org.freedesktop.systemd1",
        &path,
        "org.freedesktop.systemd1.Service",
    ];
    args.extend(PROPS);
    let out = run_bounded("busctl", &args).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != PROPS.len() {
        return Err(format!(
            "busctl get-property printed {} lines, not 2",
            lines.len()
        ));
    }
    let mut creds = Vec::new();
    for (key, line) in PROPS.iter().zip(lines) {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("busctl get-property {key}: not JSON: {e}"))?;
        let pairs = v["data"]
            .as_array()
            .ok_or_else(|| format!("busctl get-property {key}: no data array"))?;
        for pair in pairs {
            match (pair[0].as_str(), pair[1].as_str()) {
                (Some(id), Some(source)) => {
                    creds.extend(UnitCredential::parse(key, &format!("{id}:{source}")));
                }
                _ => return Err(format!("busctl get-property {key}: not (ss) pairs")),
            }
        }
    }
    Ok(creds)
}

/// `{ path=/usr/bin/x ; argv[]=/usr/bin/x a b ; ignore_errors=no ; … } { … }`.
fn parse_execs(value: &str) -> Vec<Exec> {
    value
        .split('{')
        .filter_map(|chunk| {
            let body = chunk.split('}').next()?.trim();
            let mut exec = Exec {
                path: String::new(),
                argv: Vec::new(),
                ignore_errors: false,
            };
            for field in body.split(" ; ") {
                let field = field.trim();
                if let Some(p) = field.strip_prefix("path=") {
                    exec.path = p.to_string();
                } else if let Some(a) = field.strip_prefix("argv[]=") {
                    exec.argv = split_words(a);
                } else if let Some(i) = field.strip_prefix("ignore_errors=") {
                    exec.ignore_errors = i == "yes";
                }
            }
            (!exec.path.is_empty()).then_some(exec)
        })
        .collect()
}

/// Split a command line as systemd prints it: words, with `"…"` or `'…'`
/// quoting and `\` escapes.
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// The value of gitlab-runner's `--config`/`-c` in `argv`.
fn config_arg(argv: &[String]) -> Option<PathBuf> {
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        for flag in ["--config", "-config", "-c"] {
            if a == flag {
                return it.next().map(PathBuf::from);
            }
            if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                return Some(PathBuf::from(v));
            }
        }
    }
    None
}

/// Why [`run_bounded`] has no output.
#[derive(Debug)]
pub(super) enum RunError {
    /// The program could not be started (not installed).
    NotRun(String),
    /// It ran, and failed or did not answer in time.
    Failed(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::NotRun(e) | RunError::Failed(e) => f.write_str(e),
        }
    }
}

/// Run `program` with `args`, its stdout captured, bounded to 10 s: the
/// stdout when it exits 0, else what went wrong (with its stderr).
pub(super) fn run_bounded(program: &str, args: &[&str]) -> std::result::Result<Vec<u8>, RunError> {
    let shown = format!("{program} {}", args.first().copied().unwrap_or(""));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RunError::NotRun(format!("cannot run {program}: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Failed(format!(
                    "{shown} did not answer within 10s"
                )));
            }
            Err(e) => return Err(RunError::Failed(format!("{shown}: {e}"))),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| RunError::Failed(format!("{shown}: {e}")))?;
    if !out.status.success() {
        return Err(RunError::Failed(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// Run `systemctl show` for the unit, bounded to 10 s.
fn systemctl_show() -> std::result::Result<Unit, String> {
    let out = run_bounded(
        "systemctl",
        &[
            "show",
            "-p",
            "LoadState,DropInPaths,ExecStartPre,ExecStart,NeedDaemonReload,User,LoadCredential,LoadCredentialEncrypted,TimeoutStartUSec",
            UNIT,
        ],
    )
    .map_err(|e| e.to_string())?;
    Ok(parse_show(&String::from_utf8_lossy(&out)))
}

/// Parse an `EnvironmentFile=` (`KEY=VALUE` lines, `#`/`;` comments,
/// values optionally quoted).
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            let k = k.trim().trim_start_matches("export ").trim();
            let v = v.trim();
            let v = match v.as_bytes() {
                [q @ (b'"' | b'\''), .., last] if q == last && v.len() >= 2 => &v[1..v.len() - 1],
                _ => v,
            };
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// Every `GITLAB_RUNNER_AUTH_*` variable the tool reads (from `--help`).
fn known_vars() -> Vec<String> {
    let mut out: Vec<String> = cli::HELP
        .split('[')
        .skip(1)
        .filter_map(|s| s.split(']').next())
        .filter(|v| v.starts_with(cli::ENV_PREFIX))
        .map(String::from)
        .collect();
    out.push(cli::env_name("sysroot"));
    out
}

/// Is this the settings the service and this run would differ on?
fn differences(a: &Settings, b: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |name: &str, x: String, y: String| {
        if x != y {
            out.push(format!("{name} {y} (this run: {x})"));
        }
    };
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
    cmp("--api-url", opt(&a.gitlab_url), opt(&b.gitlab_url));
    cmp(
        "--prefix",
        a.prefix.display().to_string(),
        b.prefix.display().to_string(),
    );
    cmp(
        "--config",
        a.config_path.display().to_string(),
        b.config_path.display().to_string(),
    );
    cmp(
        "--template",
        a.template_path.display().to_string(),
        b.template_path.display().to_string(),
    );
    cmp("--hostname", opt(&a.hostname), opt(&b.hostname));
    cmp(
        "--stateless",
        a.stateless.to_string(),
        b.stateless.to_string(),
    );
    out
}

/// Are `a` and `b` the same file (or would be, once created)?
fn same_file(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| {
        std::fs::canonicalize(p).ok().or_else(|| {
            let dir = std::fs::canonicalize(p.parent()?).ok()?;
            Some(dir.join(p.file_name()?))
        })
    };
    a == b || matches!((canon(a), canon(b)), (Some(x), Some(y)) if x == y)
}

/// The installation checks. Returns what later checks need.
pub fn check(s: &Settings, r: &mut Report) -> Service {
    let root = &s.sysroot;
    let systemd = root.join("run/systemd/system").is_dir();
    let unit = if systemd {
        match systemctl_show() {
            Ok(mut u) if u.unprintable => {
                match bus_credentials() {
                    Ok(c) => u.credentials = c,
                    Err(e) => r.warn(
                        "credentials",
                        format!("{UNIT}'s LoadCredential=/LoadCredentialEncrypted= are unknown: systemctl show cannot print them, and {e}"),
                        format!("systemctl cat {UNIT} shows them"),
                    ),
                }
                Some(u)
            }
            Ok(u) => Some(u),
            Err(e) => {
                r.warn(
                    "systemd",
                    e,
                    format!("run systemctl show {UNIT} by hand to see why"),
                );
                None
            }
        }
    } else {
        let no_file = SETTINGS_FILES
            .iter()
            .all(|f| std::fs::symlink_metadata(root.join(f)).is_err());
        r.skip(
            "systemd",
            format!(
                "not running here (no {}): the drop-in and gitlab-runner's --config are not checked{}",
                root.join("run/systemd/system").display(),
                if no_file {
                    ", nor a settings file (only the drop-in reads one)"
                } else {
                    ""
                }
            ),
        );
        None
    };
    let ours = unit.as_ref().and_then(|u| {
        u.execs("ExecStartPre")
            .into_iter()
            .find(|e| Path::new(&e.path).file_name() == Some("gitlab-runner-auth".as_ref()))
    });
    if let Some(u) = &unit {
        drop_in(root, u, ours.as_ref(), r);
    }
    let mut service = settings(s, systemd, ours.as_ref(), r);
    if let Some(u) = unit.as_ref().filter(|u| u.get("LoadState") == "loaded") {
        let mine = service.settings.as_ref().unwrap_or(s);
        config_path(u, mine, service.file.as_deref(), r);
        start_timeout(u, mine, r);
        service.job_user = job_user(u);
        service.credentials = u.credentials.clone();
    }
    service
}

/// The user gitlab-runner runs shell and custom executor jobs as: the
/// unit's `User=` (a `USE_INIT_USER` install runs everything as it), else
/// the `--user`/`-u` of its `run` command line (the stock unit's
/// `--user gitlab-runner`).
fn job_user(u: &Unit) -> Option<(String, &'static str)> {
    match u.get("User") {
        "" | "root" | "0" => {}
        user => return Some((user.to_string(), "User= of gitlab-runner.service")),
    }
    let exec = u.execs("ExecStart").into_iter().next()?;
    // a root service whose run has no --user runs its jobs as root
    Some(user_arg(&exec.argv).map_or(
        (
            "root".to_string(),
            "the unit runs as root and its run has no --user",
        ),
        |user| (user, "--user in its ExecStart"),
    ))
}

/// The value of gitlab-runner's `--user`/`-u` in `argv`.
fn user_arg(argv: &[String]) -> Option<String> {
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        for flag in ["--user", "-user", "-u"] {
            if a == flag {
                return it.next().cloned();
            }
            if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// `TimeoutStartSec=` against the longest run the settings allow: systemd
/// kills a start that outlasts it, so gitlab-runner fails to start exactly
/// when GitLab is slow or the cluster boots together.
fn start_timeout(u: &Unit, s: &Settings, r: &mut Report) {
    let shown = u.get("TimeoutStartUSec");
    let longest = s.longest_run();
    let parts = format!(
        "--spread {}s + --wait {}s + --timeout {}s + {}s for a token's answer",
        s.spread.as_secs(),
        s.wait.as_secs(),
        s.timeout.as_secs(),
        crate::gitlab::issuing_timeout(s.timeout).as_secs()
    );
    match timespan(shown) {
        _ if shown.is_empty() => r.skip("start timeout", format!("{UNIT}'s TimeoutStartSec= is unknown")),
        Some(Some(limit)) if limit < longest => r.fail(
            "start timeout",
            Kind::Config,
            format!(
                "TimeoutStartSec={shown} of {UNIT} is shorter than the longest run, {}s ({parts}): systemd would stop gitlab-runner's start",
                longest.as_secs()
            ),
            format!(
                "raise TimeoutStartSec= to {}s or more in a drop-in after ours (e.g. /etc/systemd/system/{UNIT}.d/60-timeout.conf), or lower those options",
                longest.as_secs()
            ),
        ),
        Some(_) => r.ok(
            "start timeout",
            format!("TimeoutStartSec={shown} covers the longest run, {}s ({parts})", longest.as_secs()),
        ),
        None => r.warn(
            "start timeout",
            format!("{UNIT}'s TimeoutStartSec={shown} cannot be read"),
            format!("make it at least {}s ({parts})", longest.as_secs()),
        ),
    }
}

/// A systemd time span as `systemctl show` prints it (`3min`, `1min 30s`,
/// `500ms`, `infinity`): `Some(None)` for infinity, `None` when unreadable.
fn timespan(text: &str) -> Option<Option<Duration>> {
    let text = text.trim();
    // 0 turns the timeout off, as infinity does
    if text == "infinity" || text == "0" {
        return Some(None);
    }
    let mut total = Duration::ZERO;
    let mut words = text.split_whitespace().peekable();
    words.peek()?;
    for word in words {
        let digits = word.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (n, unit) = word.split_at(digits);
        let n: f64 = n.parse().ok()?;
        let secs = match unit {
            "us" | "usec" => 1e-6,
            "ms" | "msec" => 1e-3,
            "s" | "sec" => 1.0,
            "min" | "m" => 60.0,
            "h" | "hr" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            "M" => 2_629_800.0,
            "y" => 31_557_600.0,
            _ => return None,
        };
        total += Duration::try_from_secs_f64(n * secs).ok()?;
    }
    Some(Some(total))
}

/// The drop-in line: is our `ExecStartPre=` in the unit, and if not, why.
fn drop_in(root: &Path, u: &Unit, ours: Option<&Exec>, r: &mut Report) {
    let state = u.get("LoadState");
    if state != "loaded" {
        r.fail(
            "drop-in",
            Kind::Config,
            format!("{UNIT} is not loaded (LoadState={state}): gitlab-runner is not installed, or its unit is broken"),
            "install gitlab-runner (its package writes the unit), then systemctl daemon-reload",
        );
        return;
    }
    let paths = u.get("DropInPaths");
    let file = paths
        .split_whitespace()
        .find(|p| p.ends_with(&format!("/{DROP_IN}")))
        .unwrap_or("");
    if let Some(e) = ours {
        let shown = e.argv.join(" ");
        if e.ignore_errors {
            r.warn(
                "drop-in",
                format!("loaded ({file}), but its ExecStartPre=-{shown} has '-': gitlab-runner starts even when this tool fails"),
                format!("remove the '-' from ExecStartPre= in {file}, then systemctl daemon-reload"),
            );
        } else {
            r.ok(
                "drop-in",
                format!("loaded: {file} runs {shown} before gitlab-runner starts"),
            );
        }
    } else {
        let admin = root.join(ADMIN_DIR).join(DROP_IN);
        let vendor = root.join(VENDOR_DIR).join(DROP_IN);
        let masked = std::fs::symlink_metadata(&admin).is_ok()
            && (std::fs::read_link(&admin).is_ok_and(|t| t == Path::new("/dev/null"))
                || std::fs::metadata(&admin).is_ok_and(|m| m.len() == 0));
        if masked {
            r.fail(
                "drop-in",
                Kind::Config,
                format!("not loaded: {} (empty or a link to /dev/null) masks {DROP_IN}, so gitlab-runner starts without this tool", admin.display()),
                format!("rm {} && systemctl daemon-reload", admin.display()),
            );
        } else if vendor.exists() && !file.is_empty() {
            r.fail(
                "drop-in",
                Kind::Config,
                format!("{file} is loaded but {UNIT} has no ExecStartPre= of gitlab-runner-auth: a later drop-in ({paths}) clears the list with an empty ExecStartPre="),
                "remove the empty ExecStartPre= line from that drop-in (keep its own ExecStartPre= after ours), then systemctl daemon-reload",
            );
        } else if let Some(installed) = [&vendor, &admin].into_iter().find(|p| p.exists()) {
            r.fail(
                "drop-in",
                Kind::Config,
                format!(
                    "{} is installed but systemd has not loaded it",
                    installed.display()
                ),
                "systemctl daemon-reload",
            );
        } else {
            r.fail(
                "drop-in",
                Kind::Config,
                format!("not installed: no {}", vendor.display()),
                "apt-get install --reinstall gitlab-runner-auth (or dnf reinstall gitlab-runner-auth); air-gapped: gitlab-runner-auth setup",
            );
        }
    }
    if u.get("NeedDaemonReload") == "yes" {
        r.warn(
            "daemon-reload",
            format!("{UNIT} or a drop-in changed since systemd loaded them"),
            "systemctl daemon-reload",
        );
    }
}

/// The settings line: what the settings file sets, and the settings the
/// service runs with.
fn settings(s: &Settings, systemd: bool, ours: Option<&Exec>, r: &mut Report) -> Service {
    let mut service = Service::default();
    let mut read = Vec::new();
    for rel in SETTINGS_FILES {
        let path = s.sysroot.join(rel);
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let text =
            trust::check_parent_dirs(&path).and_then(|()| trust::read_text(&path, Class::Input));
        match text {
            Ok(Some(text)) => {
                for (k, v) in parse_env_file(&text) {
                    service.vars.insert(k, v);
                }
                read.push(path.clone());
                service.file = Some(path);
            }
            Ok(None) => {}
            Err(e) => r.error(
                "settings",
                &e,
                Some("anyone who can write it decides where this host's tokens go"),
            ),
        }
    }
    let shown: Vec<String> = read.iter().map(|p| p.display().to_string()).collect();
    let shown = shown.join(" and ");
    let known = known_vars();
    for k in service.vars.keys() {
        if k.starts_with(cli::ENV_PREFIX) && !known.contains(k) {
            let near = crate::template::closest(k, known.iter().map(String::as_str));
            let (what, fix) = match near {
                Some(n) => (
                    format!("{shown} sets {k}, which this tool does not read (did you mean {n}?)"),
                    format!("rename {k} to {n} in {shown}"),
                ),
                None => (
                    format!("{shown} sets {k}, which this tool does not read"),
                    format!(
                        "remove {k} from {shown} (gitlab-runner-auth --help lists the variables)"
                    ),
                ),
            };
            r.warn("settings", what, fix);
        }
    }
    // the service: ExecStartPre's own arguments, the settings file's variables
    let args: Vec<std::ffi::OsString> = ours
        .map(|e| e.argv.iter().skip(1).map(Into::into).collect())
        .unwrap_or_default();
    let file_env = |k: &str| service.vars.get(k).filter(|v| !v.is_empty()).cloned();
    let of_service = cli::parse(args, &file_env)
        .and_then(|a| Settings::from_args(&a, s.credentials_dir.clone()));
    let default_file = s.sysroot.join(SETTINGS_FILES[0]);
    let target = service.file.clone().unwrap_or(default_file);
    let api_var = cli::env_name("api-url");
    match &of_service {
        Err(e) => r.fail(
            "settings",
            e.kind(),
            format!("gitlab-runner.service would run this tool with an invalid setting: {e}"),
            format!("correct it in {}", target.display()),
        ),
        Ok(svc) if svc.api_root.is_none() => {
            let what = if read.is_empty() {
                format!(
                    "no settings file ({}): the service runs this tool without an API URL, so it does nothing",
                    SETTINGS_FILES
                        .iter()
                        .map(|f| s.sysroot.join(f).display().to_string())
                        .collect::<Vec<_>>()
                        .join(" or ")
                )
            } else {
                format!(
                    "{shown} sets no {api_var}: the service runs this tool unconfigured, so it does nothing"
                )
            };
            let fix = format!(
                "echo '{api_var}=https://gitlab.example.com' >> {} (your GitLab's URL)",
                target.display()
            );
            if systemd {
                r.fail("settings", Kind::Config, what, fix);
            } else if read.is_empty() {
                // the systemd line said so: only the drop-in reads one
            } else {
                r.warn("settings", what, fix);
            }
        }
        Ok(_) => {
            let set: Vec<&str> = service
                .vars
                .iter()
                .filter(|(k, v)| {
                    !v.is_empty() && (known.contains(k) || PROXY_VARS.contains(&k.as_str()))
                })
                .map(|(k, _)| k.as_str())
                .collect();
            let from = if read.is_empty() {
                "no settings file; ExecStartPre= passes the settings".to_string()
            } else {
                format!("{shown} sets {}", set.join(", "))
            };
            r.ok("settings", from);
        }
    }
    // this run: the command line and the environment, the file for the rest
    if !read.is_empty() {
        let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        let env = |k: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| file_env(k))
        };
        if let Ok(mine) =
            cli::parse(argv, &env).and_then(|a| Settings::from_args(&a, s.credentials_dir.clone()))
        {
            service.settings = Some(mine);
        }
    }
    if let (Ok(svc), true) = (
        &of_service,
        systemd && of_service.as_ref().is_ok_and(|v| v.api_root.is_some()),
    ) {
        let mine = service.settings.as_ref().unwrap_or(s);
        let diff = differences(mine, svc);
        if !diff.is_empty() {
            r.warn(
                "service",
                format!(
                    "the service runs with {}: this run checks another setup",
                    diff.join(", ")
                ),
                "run gitlab-runner-auth doctor without those options (and with a clean environment) to check what the service uses",
            );
        }
    }
    service
}

/// The `--config` line: does gitlab-runner read the file this tool writes?
fn config_path(u: &Unit, s: &Settings, file: Option<&Path>, r: &mut Report) {
    let Some(exec) = u.execs("ExecStart").into_iter().next() else {
        r.fail(
            "--config",
            Kind::Config,
            format!("{UNIT} has no ExecStart="),
            "reinstall gitlab-runner: its post-install writes the unit (gitlab-runner install)",
        );
        return;
    };
    let ours = &s.config_path;
    let (theirs, how) = match config_arg(&exec.argv) {
        Some(p) => (p, "--config in its ExecStart"),
        None => match u.get("User") {
            "" | "root" => (
                PathBuf::from("/etc/gitlab-runner/config.toml"),
                "its default as root: ExecStart has no --config",
            ),
            user => {
                r.warn(
                    "--config",
                    format!("gitlab-runner runs as {user} without --config, so it reads ~{user}/.gitlab-runner/config.toml; this tool writes {}", ours.display()),
                    format!("make sure they are the same file, or set {}=~{user}/.gitlab-runner/config.toml", cli::env_name("config")),
                );
                return;
            }
        },
    };
    if same_file(&theirs, ours) {
        r.ok(
            "--config",
            format!(
                "gitlab-runner reads {} ({how}), the config.toml this tool writes",
                theirs.display()
            ),
        );
    } else {
        let target = file.map_or_else(|| s.sysroot.join(SETTINGS_FILES[0]), Path::to_path_buf);
        r.fail(
            "--config",
            Kind::Config,
            format!(
                "gitlab-runner reads {} ({how}) but this tool writes {}: gitlab-runner never sees its tokens",
                theirs.display(),
                ours.display()
            ),
            format!(
                "set {}={} in {}",
                cli::env_name("config"),
                theirs.display(),
                target.display()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_time_spans_are_read() {
        let s = |n| Some(Some(Duration::from_secs(n)));
        let table = [
            ("3min", s(180)),
            ("1min 30s", s(90)),
            ("4min 5.500000s", Some(Some(Duration::from_millis(245_500)))),
            ("1h 2min", s(3720)),
            ("500ms", Some(Some(Duration::from_millis(500)))),
            ("infinity", Some(None)),
            ("0", Some(None)),
            ("", None),
            ("3 parsecs", None),
            ("90", None),
        ];
        for (text, want) in table {
            assert_eq!(timespan(text), want, "{text}");
        }
    }

    #[test]
    fn systemctl_show_is_parsed() {
        let text = "LoadState=loaded\nDropInPaths=/usr/lib/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf /etc/systemd/system/gitlab-runner.service.d/kill.conf\nExecStartPre={ path=/usr/bin/true ; argv[]=/usr/bin/true ; ignore_errors=yes ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 } { path=/usr/bin/gitlab-runner-auth ; argv[]=/usr/bin/gitlab-runner-auth --verbose ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\nExecStart={ path=/usr/bin/gitlab-runner ; argv[]=/usr/bin/gitlab-runner run --config \"/etc/gitlab runner/config.toml\" --working-directory /home/gitlab-runner ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\nUser=\n";
        let u = parse_show(text);
        assert_eq!(u.get("LoadState"), "loaded");
        let pre = u.execs("ExecStartPre");
        assert_eq!(pre.len(), 2);
        assert!(pre[0].ignore_errors);
        assert_eq!(
            pre[1],
            Exec {
                path: "/usr/bin/gitlab-runner-auth".into(),
                argv: vec!["/usr/bin/gitlab-runner-auth".into(), "--verbose".into()],
                ignore_errors: false,
            }
        );
        let start = u.execs("ExecStart");
        assert_eq!(
            config_arg(&start[0].argv),
            Some(PathBuf::from("/etc/gitlab runner/config.toml"))
        );
        assert!(u.execs("ExecStopPost").is_empty());
        assert_eq!(
            job_user(&u),
            Some((
                "root".to_string(),
                "the unit runs as root and its run has no --user"
            )),
            "no --user, no User="
        );
    }

    #[test]
    fn credentials_systemd_252_cannot_print_are_noticed() {
        let u = parse_show(
            "LoadState=loaded\nLoadCredential=\nLoadCredentialEncrypted=[unprintable]\n",
        );
        assert!(u.unprintable);
        assert!(u.credentials.is_empty());
        let u = parse_show("LoadCredentialEncrypted=admin-token:/etc/c/a\n");
        assert!(!u.unprintable);
        assert_eq!(u.credentials.len(), 1);
        assert_eq!(
            bus_path("gitlab-runner.service"),
            "/org/freedesktop/systemd1/unit/gitlab_2drunner_2eservice"
        );
        assert_eq!(
            bus_path("1a.service"),
            "/org/freedesktop/systemd1/unit/_31a_2eservice"
        );
    }

    #[test]
    fn the_job_user_is_user_else_the_user_argument() {
        let show = |user: &str, argv: &str| {
            parse_show(&format!(
                "LoadState=loaded\nExecStart={{ path=/usr/bin/gitlab-runner ; argv[]={argv} ; ignore_errors=no }}\nUser={user}\n"
            ))
        };
        let stock = "/usr/bin/gitlab-runner \"run\" \"--config\" \"/etc/gitlab-runner/config.toml\" \"--working-directory\" \"/home/gitlab-runner\" \"--service\" \"gitlab-runner\" \"--user\" \"gitlab-runner\"";
        let cases = [
            (
                "",
                stock,
                Some(("gitlab-runner", "--user in its ExecStart")),
            ),
            (
                "gitlab-runner",
                "/usr/bin/gitlab-runner run",
                Some(("gitlab-runner", "User= of gitlab-runner.service")),
            ),
            ("ci", stock, Some(("ci", "User= of gitlab-runner.service"))),
            (
                "root",
                "/usr/bin/gitlab-runner run -u=ci",
                Some(("ci", "--user in its ExecStart")),
            ),
            (
                "",
                "/usr/bin/gitlab-runner run --user=ci",
                Some(("ci", "--user in its ExecStart")),
            ),
            (
                "",
                "/usr/bin/gitlab-runner run",
                Some(("root", "the unit runs as root and its run has no --user")),
            ),
        ];
        for (user, argv, want) in cases {
            assert_eq!(
                job_user(&show(user, argv)),
                want.map(|(u, how)| (u.to_string(), how)),
                "{user} {argv}"
            );
        }
    }

    #[test]
    fn config_arguments_in_every_form() {
        let argv = |s: &str| split_words(s);
        let cases = [
            ("gitlab-runner run --config /a/c.toml", Some("/a/c.toml")),
            ("gitlab-runner run --config=/a/c.toml", Some("/a/c.toml")),
            ("gitlab-runner run -c /a/c.toml", Some("/a/c.toml")),
            ("gitlab-runner run -c=/a/c.toml", Some("/a/c.toml")),
            (
                "gitlab-runner \"run\" \"--config\" \"/a/c.toml\"",
                Some("/a/c.toml"),
            ),
            ("gitlab-runner run --working-directory /home/x", None),
        ];
        for (line, want) in cases {
            assert_eq!(config_arg(&argv(line)), want.map(PathBuf::from), "{line}");
        }
    }

    #[test]
    fn environment_files_are_parsed_as_systemd_does() {
        let text = "# comment\n; also\n\nGITLAB_RUNNER_AUTH_API_URL=https://g\nGITLAB_RUNNER_AUTH_HOSTNAME=\"node 1\"\n  X='y' \nnot a line\nEMPTY=\n";
        assert_eq!(
            parse_env_file(text),
            vec![
                ("GITLAB_RUNNER_AUTH_API_URL".into(), "https://g".into()),
                ("GITLAB_RUNNER_AUTH_HOSTNAME".into(), "node 1".into()),
                ("X".into(), "y".into()),
                ("EMPTY".into(), String::new()),
            ]
        );
    }

    #[test]
    fn every_option_variable_is_known() {
        let known = known_vars();
        for v in [
            "GITLAB_RUNNER_AUTH_API_URL",
            "GITLAB_RUNNER_AUTH_PREFIX",
            "GITLAB_RUNNER_AUTH_TAGS",
            "GITLAB_RUNNER_AUTH_WARN_BEFORE",
            "GITLAB_RUNNER_AUTH_QUIET",
        ] {
            assert!(known.contains(&v.to_string()), "{v}: {known:?}");
        }
        assert_eq!(
            crate::template::closest(
                "GITLAB_RUNNER_AUTH_APIURL",
                known.iter().map(String::as_str)
            ),
            Some("GITLAB_RUNNER_AUTH_API_URL")
        );
    }
}
