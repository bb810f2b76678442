// SPDX-License-Identifier: MIT
//! The crash-point matrix: the tool is killed (SIGKILL) at every request
//! boundary of a first run, a rotation and a heal, with and without an
//! access token: when a request arrives (GitLab has not acted), after
//! GitLab acted but before the answer left, and after the answer. The fake
//! places each kill from its request log; nothing sleeps. After each kill
//! the tool runs again, and:
//! - `config.toml` and `runner-data.json` are whole files (old or new);
//! - with an access token, GitLab holds exactly one runner per type and
//!   every token in `config.toml` is live;
//! - without one, any extra runner was named in the log.
//!
//! The same for `--stateless` (a first run and a rotation).

use crate::support::*;

#[derive(Clone, Copy, Debug)]
enum Scenario {
    FirstRun,
    Rotation,
    Heal,
}

/// A fake and a prefix ready for the run under test.
fn setup(scenario: Scenario, pat: bool) -> (FakeGitlab, Prefix) {
    let mut world = World::default();
    world.token_interval = Some(100_000);
    world.latency = Some(std::time::Duration::from_millis(5));
    let gl = FakeGitlab::start(world);
    let p = Prefix::standard(REGISTRATION_TOKEN);
    if pat {
        p.write("access-token", ADMIN_PAT);
    }
    match scenario {
        Scenario::FirstRun => {}
        Scenario::Rotation => {
            assert_code(&run(&p, &gl, &[]), 0);
            let mut st = p.state();
            st["shell"]["token_obtained_at"] = "2000-01-01T00:00:00Z".into();
            p.write("runner-data.json", &st.to_string());
        }
        Scenario::Heal => {
            assert_code(&run(&p, &gl, &[]), 0);
            let id = p.state_id("batch");
            gl.world().rotate(id); // the state's token is dead now
        }
    }
    gl.world().requests.clear();
    (gl, p)
}

/// Files are whole: each parses (or is absent).
fn whole(p: &Prefix) -> Result<(), String> {
    if p.exists("config.toml") {
        p.read("config.toml")
            .parse::<toml::Table>()
            .map_err(|e| format!("torn config.toml: {e}"))?;
    }
    if p.exists("runner-data.json") {
        serde_json::from_str::<serde_json::Value>(&p.read("runner-data.json"))
            .map_err(|e| format!("torn runner-data.json: {e}"))?;
    }
    Ok(())
}

/// The same in stateless mode, which the matrix below does not cover:
/// SIGKILL at every request boundary of a first run and of a rotation;
/// after a rerun GitLab holds one runner per type and config.toml only
/// live tokens.
#[test]
fn stateless_sigkill_at_every_request_boundary_loses_nothing() {
    let args = ["--stateless"];
    for rotation in [false, true] {
        let setup = || {
            let mut world = World::default();
            world.token_interval = Some(100_000);
            let gl = FakeGitlab::start(world);
            let p = pat_prefix(REGISTRATION_TOKEN);
            if rotation {
                assert_code(&run(&p, &gl, &args), 0);
                // config.toml's shell token looks old: due for rotation
                let text = p.read("config.toml");
                let old: String = text
                    .lines()
                    .map(|l| {
                        if l.trim_start().starts_with("token_obtained_at") {
                            "  token_obtained_at = 2000-01-01T00:00:00Z".to_string()
                        } else {
                            l.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                p.write("config.toml", &format!("{old}\n"));
            }
            gl.world().requests.clear();
            (gl, p)
        };
        let (gl, p) = setup();
        assert_code(&run(&p, &gl, &args), 0);
        let lines = gl.world().lines();
        assert!(
            !rotation || lines.iter().any(|l| l.contains("reset")),
            "{lines:?}"
        );
        drop((gl, p));
        for (n, line) in lines.iter().enumerate() {
            for phase in [Phase::Arrival, Phase::Acted, Phase::Answered] {
                let (gl, p) = setup();
                let then = if phase == Phase::Answered {
                    Then::Continue
                } else {
                    Then::Drop
                };
                let killed = run_hooked(&p, &gl, &args, &[(n, phase, Some("KILL"), then)]);
                let again = run(&p, &gl, &args);
                assert_code(&again, 0);
                assert_eq!(
                    runners_per_type(&gl),
                    (1, 1),
                    "rotation {rotation} #{n} {line} {phase:?}\n{killed:?}\n{again:?}"
                );
                assert!(config_tokens_valid(&p, &gl));
            }
        }
    }
}

#[test]
fn sigkill_at_every_request_boundary_loses_nothing() {
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for scenario in [Scenario::FirstRun, Scenario::Rotation, Scenario::Heal] {
        for pat in [false, true] {
            // the requests of an undisturbed run
            let (gl, p) = setup(scenario, pat);
            assert_code(&run(&p, &gl, &[]), 0);
            let lines = gl.world().lines();
            drop((gl, p));
            for (n, line) in lines.iter().enumerate() {
                for phase in [Phase::Arrival, Phase::Acted, Phase::Answered] {
                    let (gl, p) = setup(scenario, pat);
                    let then = if phase == Phase::Answered {
                        Then::Continue
                    } else {
                        Then::Drop
                    };
                    let killed = run_hooked(&p, &gl, &[], &[(n, phase, Some("KILL"), then)]);
                    let mut outcome = whole(&p);
                    let again = run(&p, &gl, &[]);
                    let log = format!("{}{}", killed.stderr, again.stderr);
                    let (batch, shell) = runners_per_type(&gl);
                    if outcome.is_ok() {
                        outcome = whole(&p);
                    }
                    let outcome = outcome.and_then(|()| {
                        if again.code != 0 {
                            return Err(format!("rerun exit {}: {}", again.code, again.stderr));
                        }
                        if !config_tokens_valid(&p, &gl) {
                            return Err("config.toml holds a dead token".into());
                        }
                        match (pat, batch, shell) {
                            (_, 1, 1) => Ok("one runner per type".to_string()),
                            (true, _, _) => Err(format!("{batch} batch, {shell} shell runners")),
                            (false, _, _) if log.contains("may remain in GitLab") => {
                                Ok(format!("{batch}+{shell} runners, the extra one named"))
                            }
                            (false, _, _) => Err(format!("{batch}+{shell} runners and none named")),
                        }
                    });
                    let row = format!(
                        "{:<9} {:<7} #{n} {:<45} {:<8} {}",
                        format!("{scenario:?}"),
                        if pat { "pat" } else { "no pat" },
                        line,
                        format!("{phase:?}"),
                        match &outcome {
                            Ok(s) => format!("ok: {s}"),
                            Err(e) => format!("FAIL: {e}"),
                        }
                    );
                    if outcome.is_err() {
                        failures.push(format!("{row}\n--- killed run\n{}", killed.stderr));
                    }
                    rows.push(row);
                }
            }
        }
    }
    println!("crash-point matrix (scenario, access token, request, kill point, outcome):");
    for r in &rows {
        println!("  {r}");
    }
    assert!(rows.len() >= 30, "the matrix is too small: {}", rows.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
