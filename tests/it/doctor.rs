// SPDX-License-Identifier: MIT
//! The first hour: `doctor` (every check, a line and a fix for each
//! problem, nothing written, only reads and verify sent, no token shown or
//! sent from an odd settings file or an untrusted prefix; its golden files
//! are in `golden`), and the messages an admin reads after a first mistake
//! (a runner token in `admin-token`, a wrong `--api-url`, a refused token,
//! a template typo), each saying what to do next.

use crate::support::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A runner authentication token as GitLab 16+ shows one in its UI.
const RUNNER_TOKEN: &str = "glrt-t1_FromTheGitLabUi0123456789wxyz";

/// A server on loopback that answers every request `404 {"message":"404
/// Not Found"}`, as a host whose path is not GitLab's API does; it logs
/// the request lines it saw.
struct NotFound {
    url: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl NotFound {
    fn start() -> NotFound {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let lines = Arc::new(Mutex::new(Vec::new()));
        let log = lines.clone();
        std::thread::spawn(move || {
            // bounded: the tests send a handful of requests
            for conn in listener.incoming().take(64) {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let target = line
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                log.lock().unwrap().push(target);
                let body = r#"{"message":"404 Not Found"}"#;
                let _ = write!(
                    conn,
                    "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        NotFound { url, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

#[test]
fn a_runner_token_in_admin_token_is_refused_before_any_request() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(RUNNER_TOKEN);
    let r = run(&p, &gl, &[]);
    assert_code(&r, 78);
    let want = format!(
        "refusing {}: it holds a runner authentication token (glrt-t1_…wxyz), which authenticates one existing runner and cannot create runners; to use that runner, put the token in runner-data.json as its type's token ({{\"shell\": {{\"token\": \"glrt-…\"}}}}, the template using {{shell}}) or literally in config.template, and delete admin-token; to have runners created, put an access token with create_runner scope (glpat-…) in admin-token instead",
        p.path("admin-token").display()
    );
    assert!(r.stderr.contains(&want), "{r:?}");
    assert!(gl.world().requests.is_empty(), "{:?}", gl.world().lines());
    assert!(!r.output().contains(RUNNER_TOKEN), "{r:?}");
}

#[test]
fn a_runner_token_moved_to_runner_data_json_is_used_as_an_existing_runner() {
    let gl = FakeGitlab::start(World::default());
    let (id, token) = {
        let mut w = gl.world();
        let id = w.add_runner("node12-shell", &["node12", "shell"], true);
        (id, w.token_of(id))
    };
    let p = Prefix::new();
    p.write(
        "config.template",
        "[[runners]]\n  name = \"shell\"\n  url = \"http://127.0.0.1\"\n  token = \"{shell}\"\n",
    );
    p.write(
        "runner-data.json",
        &format!(r#"{{"shell": {{"token": "{token}"}}}}"#),
    );
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert_eq!(p.state_id("shell"), id, "the id is learned by verify");
    assert!(p.read("config.toml").contains(&token));
    assert!(writes(&gl).is_empty(), "{:?}", writes(&gl));
}

#[test]
fn a_refused_registration_token_shows_the_status_once_and_the_way_out() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard("GR1348941NotTheCurrentOne0000");
    let r = run(&p, &gl, &[]);
    assert_code(&r, 77);
    assert!(
        r.stderr.contains(
            "POST /runners: 403 Forbidden - invalid token supplied: GitLab refused the registration token in admin-token; copy the current one from GitLab's runners page (Admin area, or the group's or project's CI/CD settings), or put an access token with create_runner scope (glpat-…) in admin-token instead"
        ),
        "{r:?}"
    );
    assert!(!r.stderr.contains("403 403"), "{r:?}");
}

#[test]
fn registration_disabled_shows_the_status_once() {
    let mut world = World::default();
    world.registration_enabled = false;
    let gl = FakeGitlab::start(world);
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let r = run(&p, &gl, &[]);
    assert_code(&r, 78);
    assert!(
        r.stderr.contains(
            "POST /runners: 410 Gone - runner registration disallowed: registration tokens are disabled on this GitLab"
        ),
        "{r:?}"
    );
}

#[test]
fn a_wrong_api_url_path_says_check_api_url() {
    let nf = NotFound::start();
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let r = run_at(&p, &format!("{}/gitlab", nf.url), &[]);
    assert_code(&r, 78);
    assert!(
        r.stderr.contains(
            "POST /runners: 404 Not Found; check --api-url (GitLab answered 404 for the API itself)"
        ),
        "{r:?}"
    );
    assert!(!r.stderr.contains("404 404"), "{r:?}");
    assert_eq!(nf.lines(), vec!["POST /gitlab/api/v4/runners"]);
}

#[test]
fn a_template_typo_names_the_field_meant() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write(
        "config.template",
        &TEMPLATE.replace("{batch.token}", "{bach}"),
    );
    let r = run(&p, &gl, &[]);
    assert_code(&r, 78);
    assert!(
        r.stderr.contains(&format!(
            "invalid template {}:15:12: unknown field 'bach' ({} does not exist, so the runner types are batch and shell); did you mean {{batch}}?",
            p.path("config.template").display(),
            p.path("runner-data.json").display()
        )),
        "{r:?}"
    );
}

#[test]
fn help_exit_status_rows_are_aligned() {
    let p = Prefix::new();
    let mut c = command(&p);
    c.arg("--help");
    let r = run_cmd(c);
    assert_code(&r, 0);
    let table = r
        .stdout
        .split("EXIT STATUS:\n")
        .nth(1)
        .expect("EXIT STATUS");
    let rows: Vec<&str> = table.lines().filter(|l| !l.is_empty()).collect();
    assert!(rows[0].starts_with("  0   success"), "{rows:?}");
    for row in rows {
        assert!(
            row.starts_with("  ") && row[2..].starts_with(|c: char| c.is_ascii_digit()),
            "{row:?}"
        );
    }
}

// ---- doctor ----

/// An access token with `read_api` only, expiring in 10 days (the broken
/// fixture's `access-token`).
pub(crate) const READ_ONLY_PAT: &str = "glpat-ReadOnlyAndExpiring0000";

/// A `systemctl` in the prefix's `bin` (the tests' `PATH`) that prints
/// `show`, and `run/systemd/system` under the prefix's `root` (the
/// `--sysroot` of [`doctor`]): systemd running, as the test wants it.
pub(crate) fn fake_systemd(p: &Prefix, show: &[String]) {
    std::fs::create_dir_all(p.path("root/run/systemd/system")).unwrap();
    let mut script =
        String::from("#!/bin/sh\n# systemctl show, as the test wants it\nprintf '%s\\n'");
    for line in show {
        assert!(!line.contains('\''), "{line}");
        script.push_str(&format!(" '{line}'"));
    }
    script.push('\n');
    p.write_mode("bin/systemctl", &script, 0o755);
}

/// One command of an `Exec*=` property as `systemctl show` prints it.
pub(crate) fn exec(argv: &str, ignore_errors: bool) -> String {
    let path = argv.split(' ').next().unwrap();
    let ignore = if ignore_errors { "yes" } else { "no" };
    format!(
        "{{ path={path} ; argv[]={argv} ; ignore_errors={ignore} ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }}"
    )
}

/// `systemctl show` of gitlab-runner.service: the stock unit whose
/// gitlab-runner reads `config`, with our drop-in's ExecStartPre (`pre`).
pub(crate) fn unit(pre: Option<&str>, drop_ins: &str, config: &str) -> Vec<String> {
    vec![
        "LoadState=loaded".into(),
        format!("DropInPaths={drop_ins}"),
        format!("ExecStartPre={}", pre.unwrap_or("")),
        format!(
            "ExecStart={}",
            exec(
                &format!(
                    "/usr/bin/gitlab-runner run --config {config} --working-directory /home/gitlab-runner --service gitlab-runner --user gitlab-runner"
                ),
                false
            )
        ),
        "NeedDaemonReload=no".into(),
        "User=".into(),
        // the package's drop-in
        "TimeoutStartUSec=3min".into(),
    ]
}

pub(crate) const VENDOR_DROP_IN: &str =
    "/usr/lib/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf";

/// The prefix's `root/etc/default/gitlab-runner-auth`.
pub(crate) fn settings_file(p: &Prefix, text: &str) {
    std::fs::create_dir_all(p.path("root/etc/default")).unwrap();
    p.write_mode("root/etc/default/gitlab-runner-auth", text, 0o644);
}

/// The prefix's `root/etc/passwd`: root, and `gitlab-runner` (the job
/// user of the stock unit) as `uid`.
pub(crate) fn passwd(p: &Prefix, uid: u32) {
    std::fs::create_dir_all(p.path("root/etc")).unwrap();
    p.write_mode(
        "root/etc/passwd",
        &format!("root:x:0:0:root:/root:/bin/bash\ngitlab-runner:x:{uid}:{uid}:GitLab Runner:/home/gitlab-runner:/bin/bash\n"),
        0o644,
    );
}

/// `doctor` with the prefix's `root` as the host's root.
pub(crate) fn doctor(p: &Prefix, gl: &FakeGitlab, args: &[&str]) -> Run {
    doctor_at(p, &gl.url(), args)
}

pub(crate) fn doctor_at(p: &Prefix, url: &str, args: &[&str]) -> Run {
    let root = path_str(&p.path("root"));
    let mut all = vec!["doctor", "--sysroot", &root];
    all.extend(args);
    run_at(p, url, &all)
}

/// A host as it should be: runners made, the drop-in loaded, gitlab-runner
/// reading our config.toml, the settings file setting the API URL.
pub(crate) fn healthy(gl: &FakeGitlab) -> Prefix {
    healthy_with(gl, ADMIN_PAT, "")
}

/// [`healthy`] with `admin` in admin-token and `settings` (lines of
/// `NAME=value`) added to the settings file and given to the first run.
pub(crate) fn healthy_with(gl: &FakeGitlab, admin: &str, settings: &str) -> Prefix {
    let p = pat_prefix(admin);
    point_at(&p, &gl.url());
    let mut c = command(&p);
    c.args(["--api-url", &gl.url(), "--prefix"])
        .arg(&p.dir)
        .args(["--hostname", HOST, "--timeout", "5s", "--wait", "5s", "-q"]);
    for (k, v) in settings.lines().filter_map(|l| l.split_once('=')) {
        c.env(k, v);
    }
    assert_code(&run_cmd(c), 0);
    let pre = exec("/usr/bin/gitlab-runner-auth", false);
    passwd(&p, 999);
    fake_systemd(
        &p,
        &unit(
            Some(&pre),
            VENDOR_DROP_IN,
            &path_str(&p.path("config.toml")),
        ),
    );
    settings_file(
        &p,
        &format!(
            "# set by the admin\nGITLAB_RUNNER_AUTH_API_URL={}\nGITLAB_RUNNER_AUTH_PREFIX={}\nGITLAB_RUNNER_AUTH_HOSTNAME={HOST}\n{settings}",
            gl.url(),
            path_str(&p.dir)
        ),
    );
    p
}

/// A host with one of each problem `doctor` looks for that do not hide
/// each other: the drop-in masked, gitlab-runner reading another
/// config.toml, a misspelt setting and so no API URL for the service,
/// config.toml writable by others, a template typo and a foreign url, a
/// runner token in admin-token, an access token without api scope that
/// expires in 10 days, a runner token GitLab no longer accepts.
pub(crate) fn broken(gl: &FakeGitlab) -> Prefix {
    let now = gitlab_runner_auth::clock::now();
    let date = gitlab_runner_auth::clock::format(now + 10 * 86_400)[..10].to_string();
    let (id, old) = {
        let mut w = gl.world();
        w.pats.insert(
            READ_ONLY_PAT.into(),
            crate::support::fake_gitlab::Pat {
                scopes: vec!["read_api".into()],
                admin: true,
                expired: false,
                revoked: false,
                expires_at: Some(date),
            },
        );
        let id = w.add_runner("node12-shell", &["node12", "shell"], true);
        let old = w.token_of(id);
        w.rotate(id);
        (id, old)
    };
    let p = Prefix::new();
    p.write("admin-token", RUNNER_TOKEN);
    p.write("access-token", READ_ONLY_PAT);
    let template = TEMPLATE.replace("{batch.token}", "{bach}").replacen(
        "url = \"http://127.0.0.1\"",
        "url = \"https://gitlab.old.example\"",
        1,
    );
    p.write("config.template", &template);
    point_at(&p, &gl.url());
    p.write(
        "runner-data.json",
        &format!(r#"{{"shell": {{"id": {id}, "token": "{old}"}}, "batch": {{}}}}"#),
    );
    p.write_mode("config.toml", "concurrent = 2\n", 0o664);
    passwd(&p, 999);
    let masked = "etc/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf";
    std::fs::create_dir_all(p.path("root/etc/systemd/system/gitlab-runner.service.d")).unwrap();
    p.write_mode(&format!("root/{masked}"), "", 0o644);
    fake_systemd(
        &p,
        &unit(
            None,
            &format!("/{masked}"),
            "/home/gitlab-runner/config.toml",
        ),
    );
    settings_file(
        &p,
        &format!(
            "GITLAB_RUNNER_AUTH_APIURL={}\nGITLAB_RUNNER_AUTH_PREFIX={}\nGITLAB_RUNNER_AUTH_HOSTNAME={HOST}\n",
            gl.url(),
            path_str(&p.dir)
        ),
    );
    p
}

/// The report's lines as (status, check, text), fix lines left out.
pub(crate) fn lines(r: &Run) -> Vec<(String, String, String)> {
    r.stdout
        .lines()
        .filter(|l| l.starts_with("  ") && !l.trim_start().starts_with("fix:"))
        .map(|l| {
            let status = l[2..8].trim().to_string();
            let name = l[8..26].trim().to_string();
            (status, name, l[26..].to_string())
        })
        .collect()
}

/// The fix printed under the first line of check `name` containing `text`.
fn fix_of(r: &Run, name: &str, text: &str) -> Option<String> {
    let all: Vec<&str> = r.stdout.lines().collect();
    let i = all
        .iter()
        .position(|l| l.len() > 26 && l[8..26].trim() == name && l.contains(text))?;
    all.get(i + 1)?
        .trim_start()
        .strip_prefix("fix: ")
        .map(String::from)
}

/// Only reads and verify went to GitLab.
pub(crate) fn assert_read_only(gl: &FakeGitlab) {
    let w = gl.world();
    for q in &w.requests {
        assert!(
            q.method == "GET" || (q.method == "POST" && q.path == "/runners/verify"),
            "doctor sent {}",
            q.line()
        );
    }
}

/// A settings file with a token in it (a value the service would refuse,
/// an unknown variable, a garbage line): `doctor` never shows the token.
#[test]
fn doctor_never_shows_a_token_of_an_odd_settings_file() {
    let gl = FakeGitlab::start(World::default());
    let p = healthy(&gl);
    let secret_pat = "glpat-SETTINGSsecret9876543210x";
    let plain = "plainSETTINGSsecret9876543210x";
    settings_file(
        &p,
        &format!(
            "GITLAB_RUNNER_AUTH_API_URL={url}\nGITLAB_RUNNER_AUTH_PREFIX={pre}\nGITLAB_RUNNER_AUTH_HOSTNAME={HOST}\nGITLAB_RUNNER_AUTH_TIMEOUT={secret_pat}\nGITLAB_RUNNER_AUTH_ACCESS_TOKEN={plain}\nGITLAB_RUNNER_AUTH_TAG={plain},x\nGITLAB_RUNNER_AUTH_API_URL2=https://u:{plain}@h\n\u{0}\u{ff}garbage line without equals {plain}\nexport GITLAB_RUNNER_AUTH_REGISTRATION=\"{plain}\n",
            url = gl.url(),
            pre = path_str(&p.dir)
        ),
    );
    for json in [false, true] {
        let args: &[&str] = if json { &["--json"] } else { &[] };
        let r = doctor(&p, &gl, args);
        eprintln!("{r:?}");
        assert_ne!(r.code, 70, "{r:?}");
        assert_no_secrets(&r, &gl);
        assert!(
            !r.output().contains("SETTINGSsecret"),
            "settings value shown: {r:?}"
        );
    }
}

/// Tokens without a known prefix (here in admin-token) are never shown by
/// `doctor`, in text or JSON, even with `-vv`.
#[test]
fn doctor_never_shows_tokens_without_a_known_prefix() {
    let gl = FakeGitlab::start(World::default());
    let p = healthy(&gl);
    p.write("admin-token", "noprefixADMINsecret9876543210x\n");
    for json in [false, true] {
        let mut args = vec!["-vv"];
        if json {
            args.push("--json");
        }
        let r = doctor(&p, &gl, &args);
        eprintln!("{r:?}");
        assert_no_secrets(&r, &gl);
        assert!(!r.output().contains("ADMINsecret"), "{r:?}");
    }
}

/// The token `doctor`'s verify probe sends, which is no secret.
const PROBE: &str = "gitlab-runner-auth-doctor-probe";

/// `doctor` with a group-writable prefix sends no token of it to GitLab,
/// and only reads and verify.
#[test]
fn doctor_sends_no_token_from_an_untrusted_prefix() {
    let gl = FakeGitlab::start(World::default());
    let p = healthy(&gl);
    chmod(&p.dir, 0o770);
    gl.world().requests.clear();
    let r = doctor(&p, &gl, &[]);
    eprintln!("{r:?}");
    let w = gl.world();
    for q in &w.requests {
        assert!(
            q.header("private-token").is_none()
                && q.param("token").is_none_or(|t| t.as_str() == Some(PROBE)),
            "doctor sent a token from an untrusted prefix: {}",
            q.line()
        );
        assert!(
            q.method == "GET" || q.path == "/runners/verify",
            "{}",
            q.line()
        );
    }
}

#[test]
fn doctor_on_a_healthy_host_is_all_ok_reads_only_and_writes_nothing() {
    let gl = FakeGitlab::start(World::default());
    let p = healthy(&gl);
    let files = p.files();
    let snaps: Vec<_> = ["config.toml", "runner-data.json"]
        .iter()
        .map(|f| p.snapshot(f))
        .collect();
    gl.world().requests.clear();
    let r = doctor(&p, &gl, &[]);
    assert_code(&r, 0);
    let all = lines(&r);
    assert!(all.len() > 20, "{r:?}");
    for (status, name, text) in &all {
        assert_eq!(status, "ok", "{name}: {text}\n{r:?}");
    }
    assert!(
        r.stdout.ends_with(&format!(
            "\ndoctor: {} ok, 0 warnings, 0 failed, 0 skipped; exit 0\n",
            all.len()
        )),
        "{r:?}"
    );
    assert_read_only(&gl);
    assert_eq!(
        gl.world().token_reads(),
        1,
        "one read for the one access token"
    );
    assert_eq!(p.files(), files, "no file made");
    for (f, snap) in ["config.toml", "runner-data.json"].iter().zip(snaps) {
        assert_eq!(p.snapshot(f), snap, "{f} untouched");
    }
    assert_no_secrets(&r, &gl);
}

#[test]
fn doctor_gives_each_problem_its_failing_line_and_fix() {
    let gl = FakeGitlab::start(World::default());
    let p = broken(&gl);
    let files = p.files();
    let r = doctor(&p, &gl, &[]);
    assert_code(&r, 77);
    let all = lines(&r);
    let pre = path_str(&p.dir);
    // (status, check, part of the text, part of the fix)
    let want: &[(&str, &str, &str, &str)] = &[
        (
            "fail",
            "drop-in",
            "50-gitlab-runner-auth.conf, so gitlab-runner starts without this tool",
            "rm ",
        ),
        (
            "warn",
            "settings",
            "sets GITLAB_RUNNER_AUTH_APIURL, which this tool does not read (did you mean GITLAB_RUNNER_AUTH_API_URL?)",
            "rename GITLAB_RUNNER_AUTH_APIURL to GITLAB_RUNNER_AUTH_API_URL",
        ),
        (
            "fail",
            "settings",
            "sets no GITLAB_RUNNER_AUTH_API_URL: the service runs this tool unconfigured",
            "echo 'GITLAB_RUNNER_AUTH_API_URL=https://gitlab.example.com' >> ",
        ),
        (
            "fail",
            "--config",
            &format!(
                "gitlab-runner reads /home/gitlab-runner/config.toml (--config in its ExecStart) but this tool writes {pre}/config.toml"
            ),
            "GITLAB_RUNNER_AUTH_CONFIG=/home/gitlab-runner/config.toml",
        ),
        (
            "fail",
            "runner types",
            "unknown field 'bach'",
            &format!("write {{batch}} for {{bach}} at {pre}/config.template:15:12"),
        ),
        (
            "warn",
            "runner url",
            "has url https://gitlab.old.example, not the GitLab of --api-url",
            "set url = ",
        ),
        (
            "fail",
            "config.toml",
            "writable by group or others (mode 0664)",
            &format!("chmod go-w {pre}/config.toml"),
        ),
        (
            "fail",
            "admin-token",
            "it holds a runner authentication token (glrt-t1_…wxyz)",
            "to use that runner, put the token in runner-data.json",
        ),
        (
            "fail",
            "access-token",
            "has scopes read_api but its use as access-token needs api",
            "put a new access token with api scope in",
        ),
        (
            "warn",
            "access-token",
            "(9 days left)",
            "put a new access token with api scope in",
        ),
        (
            "fail",
            "shell runner",
            "GitLab rejected its token",
            "systemctl restart gitlab-runner: the run heals it by runner id with access-token",
        ),
    ];
    for (status, name, text, fix) in want {
        assert!(
            all.iter()
                .any(|(s, n, t)| s == status && n == name && t.contains(text)),
            "no {status} {name} line with {text:?}:\n{}",
            r.stdout
        );
        let got = fix_of(&r, name, text).unwrap_or_default();
        assert!(got.contains(fix), "{name}: fix {got:?} lacks {fix:?}");
    }
    let failed = all.iter().filter(|(s, _, _)| s != "ok").count();
    assert_eq!(
        failed,
        want.len(),
        "one line a problem, no more:\n{}",
        r.stdout
    );
    assert!(
        !all.iter()
            .any(|(_, n, _)| n == "runner types"
                && all.iter().filter(|(_, m, _)| m == n).count() > 1),
        "the misspelt type is not reported again as unused:\n{}",
        r.stdout
    );
    assert_read_only(&gl);
    assert_eq!(p.files(), files, "no file made");
    assert!(!r.output().contains(RUNNER_TOKEN));
    assert_no_secrets(&r, &gl);

    let r = doctor(&p, &gl, &["--json"]);
    assert_code(&r, 77);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("doctor --json is JSON");
    assert_eq!(v["exit_code"], 77);
    assert_eq!(
        v["fail"].as_u64().unwrap() + v["warn"].as_u64().unwrap(),
        want.len() as u64
    );
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), all.len());
    let admin = checks
        .iter()
        .find(|c| c["section"] == "tokens" && c["check"] == "admin-token")
        .unwrap();
    assert_eq!(admin["status"], "fail");
    assert_eq!(admin["exit_code"], 78);
    assert!(admin["fix"].as_str().unwrap().contains("create_runner"));
    assert_read_only(&gl);
}

#[test]
fn doctor_without_systemd_says_so_once() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(ADMIN_PAT);
    point_at(&p, &gl.url());
    assert_code(&run(&p, &gl, &["-q"]), 0);
    passwd(&p, 999);
    let r = doctor(&p, &gl, &[]);
    assert_code(&r, 0);
    let all = lines(&r);
    let not_ok: Vec<_> = all.iter().filter(|(s, _, _)| s != "ok").collect();
    assert_eq!(not_ok.len(), 1, "{r:?}");
    // no unit to ask: the job user is gitlab-runner's own account
    assert!(
        r.stdout.contains("  ok    job user          shell and custom executor jobs run as gitlab-runner (uid 999, gitlab-runner's own account)\n"),
        "{r:?}"
    );
    assert_eq!(not_ok[0].0, "skip");
    assert!(
        not_ok[0].2.contains("not running here (no ")
            && not_ok[0].2.contains("nor a settings file"),
        "{r:?}"
    );
}

#[test]
fn doctor_names_a_wrong_api_url() {
    let nf = NotFound::start();
    let p = pat_prefix(ADMIN_PAT);
    let r = doctor_at(&p, &format!("{}/gitlab", nf.url), &[]);
    assert_code(&r, 78);
    let all = lines(&r);
    assert!(
        all.iter().any(|(s, n, t)| s == "fail"
            && n == "api root"
            && t.contains("POST /runners/verify: 404 Not Found; check --api-url (GitLab answered 404 for the API itself)")),
        "{r:?}"
    );
    assert!(
        fix_of(&r, "api root", "404")
            .unwrap()
            .contains("GITLAB_RUNNER_AUTH_API_URL")
    );
    assert!(
        all.iter().any(|(s, n, _)| s == "skip" && n == "tokens"),
        "{r:?}"
    );
    assert_eq!(
        nf.lines(),
        vec!["POST /gitlab/api/v4/runners/verify"],
        "the probe only"
    );
}

#[test]
fn doctor_names_the_cas_an_untrusted_certificate_was_checked_against() {
    let gl = FakeGitlab::start_tls(World::default());
    let p = pat_prefix(ADMIN_PAT);
    let r = doctor(&p, &gl, &[]);
    assert_code(&r, 77);
    let all = lines(&r);
    assert!(
        all.iter()
            .any(|(s, n, t)| s == "fail" && n == "tls" && t.contains("is not trusted by the ")),
        "{r:?}"
    );
    assert!(
        fix_of(&r, "tls", "not trusted")
            .unwrap()
            .contains("GITLAB_RUNNER_AUTH_CA_FILE")
    );
    p.write("site-ca.pem", gl.ca_pem.as_deref().unwrap());
    let ca = path_str(&p.path("site-ca.pem"));
    let r = doctor(&p, &gl, &["--ca-file", &ca]);
    assert_code(&r, 0);
    let all = lines(&r);
    assert!(
        all.iter().any(|(s, n, t)| s == "ok"
            && n == "tls"
            && t.contains(&format!("and --ca-file {ca})"))),
        "{r:?}"
    );
    assert!(
        all.iter()
            .any(|(s, n, t)| s == "ok" && n == "--ca-file" && t.contains("1 certificate(s)")),
        "{r:?}"
    );
}

#[test]
fn doctor_says_gitlab_is_unreachable_and_through_which_proxy() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let p = pat_prefix(ADMIN_PAT);
    let r = doctor_at(&p, &format!("http://{closed}"), &["--wait", "1s"]);
    assert_code(&r, 69);
    let all = lines(&r);
    assert!(
        all.iter().any(|(s, n, t)| s == "fail"
            && n == "reachable"
            && t.contains(&format!("cannot reach {closed}"))),
        "{r:?}"
    );
    assert!(
        all.iter()
            .any(|(s, n, t)| s == "ok" && n == "proxy" && t.starts_with("none: no ALL_PROXY")),
        "{r:?}"
    );

    // through a proxy: named without its credentials; NO_PROXY exemptions
    let gl = FakeGitlab::start(World::default());
    let doctor_env = |env: &[(&str, &str)]| {
        let root = path_str(&p.path("root"));
        let mut c = command(&p);
        c.args(["--api-url", &gl.url(), "--prefix"])
            .arg(&p.dir)
            .args([
                "--hostname",
                HOST,
                "--timeout",
                "5s",
                "--wait",
                "1s",
                "doctor",
                "--sysroot",
                &root,
            ]);
        for (k, v) in env {
            c.env(k, v);
        }
        run_cmd(c)
    };
    let proxy = format!("http://user:secret@{closed}");
    let r = doctor_env(&[("HTTPS_PROXY", &proxy)]);
    assert_code(&r, 69);
    assert!(
        r.stdout.contains(&format!(
            "  ok    proxy             http://{closed} (from HTTPS_PROXY)"
        )),
        "{r:?}"
    );
    assert!(!r.output().contains("secret"), "{r:?}");
    let r = doctor_env(&[("HTTPS_PROXY", &proxy), ("NO_PROXY", "127.0.0.1")]);
    assert_code(&r, 0);
    assert!(
        r.stdout.contains("none: NO_PROXY exempts 127.0.0.1:"),
        "{r:?}"
    );
    // the service's settings file sets a proxy this run does not have
    settings_file(
        &p,
        &format!(
            "GITLAB_RUNNER_AUTH_API_URL={}\nHTTPS_PROXY={proxy}\n",
            gl.url()
        ),
    );
    let r = doctor_env(&[]);
    assert_code(&r, 0);
    assert!(
        r.stdout.contains(&format!(
            "sets HTTPS_PROXY=http://…@{closed}, which this run's environment does not"
        )),
        "{r:?}"
    );
    assert!(!r.output().contains("secret"), "{r:?}");
}

#[test]
fn doctor_reports_a_state_that_does_not_parse() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(ADMIN_PAT);
    p.write("runner-data.json", r#"{"shell": {"id": "x"}, "batch": {}}"#);
    let r = doctor(&p, &gl, &[]);
    assert_code(&r, 65);
    let all = lines(&r);
    assert!(
        all.iter().any(|(s, n, t)| s == "fail"
            && n == "runner-data.json"
            && t.contains("'id' is not an integer")),
        "{r:?}"
    );
    assert!(
        fix_of(&r, "runner-data.json", "not an integer")
            .unwrap()
            .contains("python3 -m json.tool")
    );
    assert!(
        !all.iter().any(|(_, n, _)| n == "runner types"),
        "not matched against an unread state: {r:?}"
    );
}

#[test]
fn doctor_checks_the_token_kind_fits_registration_and_mode() {
    let gl = FakeGitlab::start(World::default());
    // (admin-token, access-token, options, failing check, text)
    type Case<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        &'a [&'a str],
        &'a str,
        &'a str,
    );
    let cases: &[Case] = &[
        (
            Some(REGISTRATION_TOKEN),
            None,
            &["--registration", "user-runners"],
            "admin-token",
            "holds GR1348941…tK8a, a runner registration token, but --registration user-runners",
        ),
        (
            Some(ADMIN_PAT),
            None,
            &["--registration", "legacy"],
            "admin-token",
            "but --registration legacy sends it to POST /runners",
        ),
        (
            Some(ADMIN_PAT),
            None,
            &["--stateless"],
            "access-token",
            "--stateless needs an access token",
        ),
        (
            Some("gldt-DeployTokenNotForRunners00"),
            None,
            &[],
            "admin-token",
            "holds gldt-…rs00, a deploy token, which cannot create runners",
        ),
        (
            Some(ADMIN_PAT),
            Some(REGISTRATION_TOKEN),
            &[],
            "access-token",
            "holds GR1348941…tK8a, a runner registration token, not an access token",
        ),
        (None, None, &[], "admin-token", "no admin-token in "),
    ];
    for (admin, access, args, name, text) in cases {
        let p = Prefix::new();
        p.write("config.template", TEMPLATE);
        if let Some(a) = admin {
            p.write("admin-token", a);
        }
        if let Some(a) = access {
            p.write("access-token", a);
        }
        let r = doctor(&p, &gl, args);
        assert_code(&r, 78);
        let all = lines(&r);
        assert!(
            all.iter()
                .any(|(s, n, t)| s == "fail" && n == name && t.contains(text)),
            "{admin:?} {access:?} {args:?}: no fail {name} with {text:?}\n{r:?}"
        );
        assert!(fix_of(&r, name, text).is_some(), "{r:?}");
    }
    // a registration token in the legacy workflow, an access token for user runners: ok
    for admin in [REGISTRATION_TOKEN, ADMIN_PAT] {
        let p = Prefix::standard(admin);
        let r = doctor(&p, &gl, &[]);
        let all = lines(&r);
        assert!(
            all.iter().any(|(s, n, _)| s == "ok" && n == "admin-token"),
            "{r:?}"
        );
    }
}

#[test]
fn doctor_tells_why_the_drop_in_is_not_loaded() {
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(ADMIN_PAT);
    let config = path_str(&p.path("config.toml"));
    settings_file(
        &p,
        &format!(
            "GITLAB_RUNNER_AUTH_API_URL={}\nGITLAB_RUNNER_AUTH_PREFIX={}\n",
            gl.url(),
            path_str(&p.dir)
        ),
    );
    let ours = exec("/usr/bin/gitlab-runner-auth", false);
    // (unit, vendor drop-in installed, status, text, fix)
    let vendor = format!("root{VENDOR_DROP_IN}");
    let cases: Vec<(Vec<String>, bool, &str, &str, &str)> = vec![
        (
            unit(Some(&ours), VENDOR_DROP_IN, &config),
            true,
            "ok",
            "loaded: /usr/lib/systemd/system/gitlab-runner.service.d/50-gitlab-runner-auth.conf runs /usr/bin/gitlab-runner-auth",
            "",
        ),
        (
            unit(
                Some(&exec("/usr/bin/gitlab-runner-auth", true)),
                VENDOR_DROP_IN,
                &config,
            ),
            true,
            "warn",
            "has '-': gitlab-runner starts even when this tool fails",
            "remove the '-'",
        ),
        (
            unit(None, "", &config),
            true,
            "fail",
            "is installed but systemd has not loaded it",
            "systemctl daemon-reload",
        ),
        (
            unit(
                None,
                &format!(
                    "{VENDOR_DROP_IN} /etc/systemd/system/gitlab-runner.service.d/override.conf"
                ),
                &config,
            ),
            true,
            "fail",
            "a later drop-in",
            "remove the empty ExecStartPre=",
        ),
        (
            unit(None, "", &config),
            false,
            "fail",
            "not installed: no ",
            "apt-get install --reinstall gitlab-runner-auth",
        ),
        (
            vec!["LoadState=not-found".into()],
            false,
            "fail",
            "gitlab-runner.service is not loaded (LoadState=not-found)",
            "install gitlab-runner",
        ),
    ];
    for (show, installed, status, text, fix) in cases {
        fake_systemd(&p, &show);
        let _ = std::fs::remove_file(p.path(&vendor));
        if installed {
            std::fs::create_dir_all(p.path(&vendor).parent().unwrap()).unwrap();
            p.write_mode(
                &vendor,
                "[Service]\nExecStartPre=/usr/bin/gitlab-runner-auth\n",
                0o644,
            );
        }
        let r = doctor(&p, &gl, &[]);
        let all = lines(&r);
        assert!(
            all.iter()
                .any(|(s, n, t)| s == status && n == "drop-in" && t.contains(text)),
            "no {status} drop-in line with {text:?}:\n{r:?}"
        );
        if !fix.is_empty() {
            assert!(
                fix_of(&r, "drop-in", text)
                    .unwrap_or_default()
                    .contains(fix),
                "{r:?}"
            );
        }
    }
}

#[test]
fn doctor_checks_with_the_settings_file_as_the_service_does() {
    let gl = FakeGitlab::start(World::default());
    let p = healthy(&gl);
    // nothing on the command line: the settings file's URL, prefix and hostname
    let root = path_str(&p.path("root"));
    let mut c = command(&p);
    c.args(["doctor", "--sysroot", &root]);
    let r = run_cmd(c);
    assert_code(&r, 0);
    assert!(
        r.stdout.starts_with(&format!(
            "gitlab-runner-auth doctor: prefix {}, config {}, GitLab {}, stateful\n",
            p.dir.display(),
            p.path("config.toml").display(),
            gl.url()
        )),
        "{r:?}"
    );
    assert!(lines(&r).iter().all(|(s, _, _)| s == "ok"), "{r:?}");
    // the command line points elsewhere than the service: said
    settings_file(
        &p,
        &format!(
            "GITLAB_RUNNER_AUTH_API_URL={}\nGITLAB_RUNNER_AUTH_HOSTNAME={HOST}\n",
            gl.url()
        ),
    );
    let r = doctor(&p, &gl, &[]);
    let all = lines(&r);
    assert!(
        all.iter().any(|(s, n, t)| s == "warn"
            && n == "service"
            && t.contains(&format!(
                "--prefix /etc/gitlab-runner (this run: {})",
                p.dir.display()
            ))),
        "{r:?}"
    );
    // a value the service would refuse
    settings_file(
        &p,
        &format!(
            "GITLAB_RUNNER_AUTH_API_URL={}\nGITLAB_RUNNER_AUTH_WAIT=5 minutes\n",
            gl.url()
        ),
    );
    let r = doctor(&p, &gl, &[]);
    assert_code(&r, 64);
    assert!(
        lines(&r).iter().any(|(s, n, t)| s == "fail"
            && n == "settings"
            && t.contains("invalid --wait '5 minutes'")),
        "{r:?}"
    );
}

#[test]
fn a_socks_proxy_is_a_doctor_failure_and_does_not_hide_https_proxy() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gl = FakeGitlab::start(World::default());
    let p = pat_prefix(ADMIN_PAT);
    let with_env = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = command(&p);
        c.args(["--api-url", &gl.url(), "--prefix"])
            .arg(&p.dir)
            .args(["--hostname", HOST, "--timeout", "5s", "--wait", "1s"])
            .args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        run_cmd(c)
    };
    let root = path_str(&p.path("root"));
    let doctor_args = ["doctor", "--sysroot", &root];
    let socks = "socks5://user:secret@127.0.0.1:1080";
    let https = format!("http://{closed}");

    // ALL_PROXY is SOCKS, which the client cannot use: HTTPS_PROXY is the proxy
    let env = [("ALL_PROXY", socks), ("HTTPS_PROXY", https.as_str())];
    let r = with_env(&doctor_args, &env);
    assert_code(&r, 78);
    assert!(
        r.stdout.contains(&format!(
            "  fail  proxy             ignoring ALL_PROXY=socks5://…@127.0.0.1:1080: not an http:// or https:// proxy (SOCKS is not supported); connecting through http://{closed} (from HTTPS_PROXY) instead\n        fix: unset those variables, or set them to an http:// proxy (HTTPS_PROXY=http://proxy:3128; NO_PROXY for exemptions)\n  ok    proxy             http://{closed} (from HTTPS_PROXY)\n"
        )),
        "{r:?}"
    );
    // through the closed proxy: GitLab itself is never reached
    assert!(
        r.stdout
            .contains("  fail  reachable         cannot reach 127.0.0.1:")
            && r.stdout.contains("Connection refused"),
        "{r:?}"
    );
    assert!(!r.output().contains("secret"), "{r:?}");
    // the run goes through that proxy too (here: closed), and says so once
    let r = with_env(&[], &env);
    assert_code(&r, 69);
    assert_eq!(
        r.stderr
            .matches(&format!(
                "ignoring ALL_PROXY=socks5://…@127.0.0.1:1080: not an http:// or https:// proxy (SOCKS is not supported); connecting through http://{closed} (from HTTPS_PROXY) instead"
            ))
            .count(),
        1,
        "{r:?}"
    );
    assert!(gl.world().requests.is_empty(), "{:?}", gl.world().lines());

    // SOCKS alone: a direct connection, as the client makes it
    let r = with_env(&doctor_args, &[("ALL_PROXY", socks)]);
    assert_code(&r, 78);
    assert!(
        r.stdout
            .contains("  ok    proxy             none: a direct connection\n"),
        "{r:?}"
    );
    assert!(r.stdout.contains("connecting directly instead"), "{r:?}");
}

/// A `systemd-creds` in the prefix's `bin`: `decrypt --name=NAME FILE -`
/// prints what follows `enc:NAME:` in FILE, and fails as the real one
/// does when the name embedded is another.
fn fake_systemd_creds(p: &Prefix) {
    p.write_mode(
        "bin/systemd-creds",
        "#!/bin/sh\n# systemd-creds decrypt, as the test wants it\n[ \"$1\" = decrypt ] || exit 1\nname=${2#--name=}\nread -r text < \"$3\"\ncase $text in\n  enc:$name:*) printf '%s' \"${text#enc:$name:}\" ;;\n  *) echo \"Embedded credential name does not match filename '$name'.\" >&2; exit 1 ;;\nesac\n",
        0o755,
    );
}

#[test]
fn doctor_reports_tokens_the_unit_passes_encrypted() {
    let gl = FakeGitlab::start(World::default());
    let p = healthy(&gl);
    fake_systemd_creds(&p);
    let store = "etc/credstore.encrypted";
    std::fs::create_dir_all(p.path(&format!("root/{store}"))).unwrap();
    for name in ["admin-token", "access-token"] {
        let token = p.read(name);
        p.write(
            &format!("root/{store}/gitlab-runner-auth.{name}"),
            &format!("enc:{name}:{token}"),
        );
        std::fs::remove_file(p.path(name)).unwrap();
    }
    let mut show = unit(
        Some(&exec("/usr/bin/gitlab-runner-auth", false)),
        &format!(
            "{VENDOR_DROP_IN} /etc/systemd/system/gitlab-runner.service.d/60-credentials.conf"
        ),
        &path_str(&p.path("config.toml")),
    );
    for name in ["admin-token", "access-token"] {
        show.push(format!(
            "LoadCredentialEncrypted={name}:/{store}/gitlab-runner-auth.{name}"
        ));
    }
    fake_systemd(&p, &show);
    let source = |name: &str| {
        format!(
            "{} (LoadCredentialEncrypted of gitlab-runner.service): encrypted; systemd decrypts it into the service's $CREDENTIALS_DIRECTORY",
            p.path(&format!("root/{store}/gitlab-runner-auth.{name}"))
                .display()
        )
    };
    let r = doctor(&p, &gl, &[]);
    assert_code(&r, 0);
    let all = lines(&r);
    for name in ["admin-token", "access-token"] {
        let line = all
            .iter()
            .find(|(_, n, t)| n == name && t.starts_with(&source(name)))
            .unwrap_or_else(|| panic!("no source line for {name}:\n{r:?}"));
        assert_eq!(line.0, "ok", "{r:?}");
        if is_root() {
            assert!(
                line.2.ends_with("(systemd-creds decrypt reads it here)"),
                "{r:?}"
            );
            // decrypted: classified and asked about as a file would be
            assert!(
                all.iter()
                    .any(|(s, n, t)| s == "ok" && n == name && t.starts_with("holds glpat-")),
                "{name} not classified:\n{r:?}"
            );
        } else {
            assert!(
                line.2.ends_with("(not decrypted here: doctor is not root)"),
                "{r:?}"
            );
        }
    }
    assert!(
        all.iter().all(|(s, _, _)| s == "ok" || s == "skip"),
        "{r:?}"
    );
    assert_no_secrets(&r, &gl);

    // systemd 252's systemctl show prints them as [unprintable]: the bus
    // (busctl --json=short get-property) says the same
    let mut old = show.clone();
    old.retain(|l| !l.starts_with("LoadCredential"));
    old.push("LoadCredential=".into());
    old.push("LoadCredentialEncrypted=[unprintable]".into());
    fake_systemd(&p, &old);
    let data: Vec<String> = ["admin-token", "access-token"]
        .iter()
        .map(|n| format!("[\"{n}\",\"/{store}/gitlab-runner-auth.{n}\"]"))
        .collect();
    p.write_mode(
        "bin/busctl",
        &format!(
            "#!/bin/sh\n# busctl get-property, as systemd 252 answers\n[ \"$1 $2 $4\" = '--json=short get-property /org/freedesktop/systemd1/unit/gitlab_2drunner_2eservice' ] || exit 1\nprintf '%s\\n' '{{\"type\":\"a(ss)\",\"data\":[]}}' '{{\"type\":\"a(ss)\",\"data\":[{}]}}'\n",
            data.join(",")
        ),
        0o755,
    );
    let r = doctor(&p, &gl, &[]);
    assert_code(&r, 0);
    assert_eq!(lines(&r), all, "{r:?}");

    // a plain copy left in the prefix: never read by the service, said
    p.write("admin-token", ADMIN_PAT);
    let r = doctor(&p, &gl, &[]);
    assert_code(&r, 0);
    let prefix_file = path_str(&p.path("admin-token"));
    assert!(
        lines(&r).iter().any(|(s, n, t)| s == "warn"
            && n == "admin-token"
            && t.starts_with(&format!(
                "{prefix_file} is not read by gitlab-runner.service"
            ))),
        "{r:?}"
    );
    assert!(
        fix_of(&r, "admin-token", "is not read")
            .unwrap_or_default()
            .starts_with(&format!("rm {prefix_file}")),
        "{r:?}"
    );
    std::fs::remove_file(p.path("admin-token")).unwrap();

    // encrypted under another name: systemd refuses it as well
    let admin = format!("root/{store}/gitlab-runner-auth.admin-token");
    p.write(&admin, &format!("enc:access-token:{ADMIN_PAT}"));
    if is_root() {
        let r = doctor(&p, &gl, &[]);
        assert_code(&r, 78);
        assert!(
            lines(&r).iter().any(|(s, n, t)| s == "fail"
                && n == "admin-token"
                && t.contains("does not decrypt on this host")
                && t.contains("Embedded credential name")),
            "{r:?}"
        );
        assert!(
            fix_of(&r, "admin-token", "does not decrypt")
                .unwrap_or_default()
                .starts_with("systemd-creds encrypt --name=admin-token "),
            "{r:?}"
        );
    }

    // the file gone: the unit cannot start
    std::fs::remove_file(p.path(&admin)).unwrap();
    let r = doctor(&p, &gl, &[]);
    assert_code(&r, 78);
    assert!(
        lines(&r).iter().any(|(s, n, t)| s == "fail"
            && n == "admin-token"
            && t.contains("gitlab-runner-auth.admin-token (LoadCredentialEncrypted of gitlab-runner.service) does not exist: systemd fails gitlab-runner.service before this tool runs")),
        "{r:?}"
    );
}

/// `--spread 40s` with the defaults needs 185 s, past the drop-in's
/// `TimeoutStartSec=180`: doctor fails the line with the value to set;
/// a unit with 4 minutes (or no timeout) is fine.
#[test]
fn doctor_fails_a_start_timeout_shorter_than_the_longest_run() {
    let gl = FakeGitlab::start(World::default());
    let p = healthy_with(&gl, ADMIN_PAT, "GITLAB_RUNNER_AUTH_SPREAD=40s\n");
    let defaults = ["--wait", "60s", "--timeout", "20s"];
    let r = doctor(&p, &gl, &defaults);
    assert_code(&r, 78);
    let line = lines(&r)
        .into_iter()
        .find(|(_, name, _)| name == "start timeout")
        .unwrap();
    assert_eq!(
        (line.0.as_str(), line.2.as_str()),
        (
            "fail",
            "TimeoutStartSec=3min of gitlab-runner.service is shorter than the longest run, 185s (--spread 40s + --wait 60s + --timeout 20s + 65s for a token's answer): systemd would stop gitlab-runner's start"
        ),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("raise TimeoutStartSec= to 185s or more"),
        "{r:?}"
    );
    let pre = exec("/usr/bin/gitlab-runner-auth", false);
    for timeout in ["4min", "infinity"] {
        let mut u = unit(
            Some(&pre),
            VENDOR_DROP_IN,
            &path_str(&p.path("config.toml")),
        );
        u.retain(|l| !l.starts_with("TimeoutStartUSec="));
        u.push(format!("TimeoutStartUSec={timeout}"));
        fake_systemd(&p, &u);
        let r = doctor(&p, &gl, &defaults);
        assert_code(&r, 0);
        assert!(
            lines(&r)
                .iter()
                .any(|(s, name, _)| s == "ok" && name == "start timeout"),
            "{r:?}"
        );
    }
}
