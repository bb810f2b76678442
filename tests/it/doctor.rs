// SPDX-License-Identifier: MIT
//! The first hour: the messages an admin reads after a first mistake (a
//! runner token in `admin-token`, a wrong `--api-url`, a refused token, a
//! template typo), each saying what to do next.

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
