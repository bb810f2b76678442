// SPDX-License-Identifier: MIT
//! The command line: usage errors, `--help` and `--version`, environment
//! variables, options (`--quiet`, `--allow-http`, the CA file), and a host
//! with nothing configured.

use crate::support::*;

#[test]
fn not_configured_exits_zero_touching_nothing() {
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let mut c = command(&p);
    c.arg("--prefix").arg(&p.dir);
    let r = run_cmd(c);
    assert_code(&r, 0);
    assert!(r.stderr.contains("not configured"), "{r:?}");
    assert_eq!(p.files(), vec!["admin-token", "config.template"]);
}

#[test]
fn usage_errors_help_and_version() {
    let p = Prefix::new();
    let r = run_cmd({
        let mut c = command(&p);
        c.args(["--bogus"]);
        c
    });
    assert_code(&r, 64);
    assert!(r.stderr.contains("unexpected argument '--bogus'"), "{r:?}");
    let r = run_cmd({
        let mut c = command(&p);
        c.args(["--api-url", "gitlab.example.com", "--prefix"])
            .arg(&p.dir);
        c
    });
    assert_code(&r, 64);
    let r = run_cmd({
        let mut c = command(&p);
        c.arg("--help");
        c
    });
    assert_code(&r, 0);
    for code in ["64", "65", "69", "70", "73", "75", "77", "78"] {
        assert!(r.stdout.contains(&format!("  {code}  ")), "{code}");
    }
    let r = run_cmd({
        let mut c = command(&p);
        c.arg("-V");
        c
    });
    assert_code(&r, 0);
    assert!(r.stdout.starts_with("gitlab-runner-auth "), "{r:?}");
}

#[test]
fn huge_durations_are_usage_errors_before_any_request() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let r = run(&p, &gl, &["--wait", "18446744073709551615s"]);
    assert_code(&r, 64);
    assert!(
        r.stderr.contains("invalid --wait '184467…': at most 7d"),
        "{r:?}"
    );
    // run() passes its own --timeout: build this command by hand
    let r = run_cmd({
        let mut c = command(&p);
        c.args(["--api-url", &gl.url(), "--prefix"])
            .arg(&p.dir)
            .args(["--hostname", HOST, "--timeout", "99999d"]);
        c
    });
    assert_code(&r, 64);
    assert!(
        r.stderr.contains("invalid --timeout '99999d': at most 7d"),
        "{r:?}"
    );
    let r = run(&p, &gl, &["--rotate-before", "99999d"]);
    assert_code(&r, 64);
    assert!(gl.world().lines().is_empty(), "{:?}", gl.world().lines());
    assert!(!p.exists("config.toml"));
}

#[test]
fn plain_http_to_a_remote_host_is_refused_unless_allow_http() {
    let p = Prefix::standard(REGISTRATION_TOKEN);
    // .invalid never resolves: nothing leaves the machine even if the refusal broke
    let url = "http://gitlab.invalid";
    let r = run_at(&p, url, &[]);
    assert_code(&r, 78);
    assert!(
        r.stderr.contains(
            "refusing plain http:// to gitlab.invalid: tokens would cross the network unencrypted; use https:// or pass --allow-http"
        ),
        "{r:?}"
    );
    assert!(!r.stderr.contains("POST /runners"), "{r:?}");
    assert_eq!(
        p.files(),
        vec!["admin-token", "config.template"],
        "no lock taken"
    );
    for allow in [
        run_at(&p, url, &["--allow-http", "--wait", "1s"]),
        run_cmd({
            let mut c = command(&p);
            c.env("GITLAB_RUNNER_AUTH_ALLOW_HTTP", "yes")
                .args(["--api-url", url, "--prefix"])
                .arg(&p.dir)
                .args(["--hostname", HOST, "--wait", "1s"]);
            c
        }),
    ] {
        assert_code(&allow, 69);
        assert!(
            allow
                .stderr
                .contains("using plain http:// to gitlab.invalid (--allow-http): tokens cross the network unencrypted"),
            "{allow:?}"
        );
    }
    // loopback needs no flag, and a missing URL is still "not configured"
    let gl = FakeGitlab::start(World::default());
    let r = run(&p, &gl, &[]);
    assert_code(&r, 0);
    assert!(!r.stderr.contains("plain http"), "{r:?}");
    let r = run_cmd({
        let mut c = command(&p);
        c.arg("--prefix").arg(&p.dir);
        c
    });
    assert_code(&r, 0);
}

#[test]
fn environment_variables_configure_the_run() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let mut c = command(&p);
    c.env(
        "GITLAB_RUNNER_AUTH_API_URL",
        format!("{}/api/v4/", gl.url()),
    )
    .env("GITLAB_RUNNER_AUTH_PREFIX", &p.dir)
    .env("GITLAB_RUNNER_AUTH_HOSTNAME", "login3")
    .env("GITLAB_RUNNER_AUTH_TAGS", "a,b");
    let r = run_cmd(c);
    assert_code(&r, 0);
    let w = gl.world();
    let shell = w
        .runners
        .values()
        .find(|r| r.description == "login3-shell")
        .expect("shell");
    assert_eq!(shell.tags, vec!["login3", "login", "shell", "a", "b"]);
}

#[test]
fn quiet_prints_only_the_summary() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    point_at(&p, &gl.url());
    let r = run(&p, &gl, &["-q"]);
    assert_code(&r, 0);
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains("2 runners ok (2 created); "), "{r:?}");
}

#[test]
fn https_with_the_site_ca_from_ca_file_or_ssl_cert_file() {
    let gl = FakeGitlab::start_tls(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    p.write("site-ca.pem", gl.ca_pem.as_deref().unwrap());
    let ca = path_str(&p.path("site-ca.pem"));
    let r = run(&p, &gl, &["--wait", "1s"]);
    assert_code(&r, 77);
    assert!(r.stderr.contains("POST /runners"), "{r:?}");
    assert!(r.stderr.contains("--ca-file"), "{r:?}");
    assert!(gl.world().runners.is_empty());
    let r = run(&p, &gl, &["--ca-file", &ca]);
    assert_code(&r, 0);
    assert_eq!(gl.world().runners.len(), 2);
    assert!(!r.stderr.contains("plain http"), "{r:?}");
    // the distro way: the site CA in the system bundle
    let mut c = command(&p);
    c.env("SSL_CERT_FILE", &ca)
        .args(["--api-url", &gl.url(), "--prefix"])
        .arg(&p.dir)
        .args(["--hostname", HOST]);
    let r = run_cmd(c);
    assert_code(&r, 0);
    assert!(r.stderr.contains("2 runners ok (2 verified); "), "{r:?}");
}

#[test]
fn a_hostname_or_tag_gitlab_would_split_is_a_usage_error() {
    let gl = FakeGitlab::start(World::default());
    let p = Prefix::standard(REGISTRATION_TOKEN);
    let r = run(&p, &gl, &["--tag", "a b"]);
    assert_code(&r, 64);
    assert!(
        r.stderr
            .contains(r#"invalid --tag "a b": runner tags cannot hold whitespace"#),
        "{r:?}"
    );
    let mut c = command(&p);
    c.env("GITLAB_RUNNER_AUTH_HOSTNAME", "node\u{1b}[2J12")
        .args(["--api-url", &gl.url(), "--prefix"])
        .arg(&p.dir);
    let r = run_cmd(c);
    assert_code(&r, 64);
    assert!(
        r.stderr.contains(
            r#"invalid --hostname "node\u{1b}[2J12": runner tags cannot hold a control character"#
        ),
        "{r:?}"
    );
    assert!(
        !r.stderr.contains('\u{1b}'),
        "no raw escape in the log: {r:?}"
    );
    assert!(gl.world().lines().is_empty(), "{:?}", gl.world().lines());
    assert_eq!(p.files(), vec!["admin-token", "config.template"]);
}

#[test]
fn an_api_url_with_a_character_a_url_cannot_hold_is_refused_by_every_command() {
    let value = "https://x\nHTTPS_PROXY=http://evil:3128";
    let line = r#"invalid --api-url "https://x\nHTTPS_PROXY=http://evil:3128": '\n' cannot stand unescaped in a URL"#;
    for command_name in ["run", "plan", "status", "doctor", "import", "setup"] {
        for from_env in [false, true] {
            let p = Prefix::standard(REGISTRATION_TOKEN);
            let root = p.path("root");
            std::fs::create_dir(&root).unwrap();
            let before: Vec<_> = ["admin-token", "config.template"]
                .map(|f| p.snapshot(f))
                .into();
            let mut c = command(&p);
            c.arg(command_name)
                .arg("--prefix")
                .arg(&p.dir)
                .arg("--sysroot")
                .arg(&root);
            if from_env {
                c.env("GITLAB_RUNNER_AUTH_API_URL", value);
            } else {
                c.args(["--api-url", value]);
            }
            let r = run_cmd(c);
            assert_code(&r, 64);
            let lines: Vec<&str> = r.stderr.lines().collect();
            assert_eq!(lines.len(), 1, "one line: {r:?}");
            assert!(lines[0].ends_with(line), "{command_name}: {r:?}");
            assert!(r.stdout.is_empty(), "{r:?}");
            assert_eq!(p.files(), vec!["admin-token", "config.template", "root"]);
            assert_eq!(
                std::fs::read_dir(&root).unwrap().count(),
                0,
                "nothing under the sysroot"
            );
            let after: Vec<_> = ["admin-token", "config.template"]
                .map(|f| p.snapshot(f))
                .into();
            assert_eq!(after, before, "bytes and mtime");
        }
    }
}
