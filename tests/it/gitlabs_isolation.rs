// SPDX-License-Identifier: MIT
//! Several GitLabs: one GitLab's tokens never reach another, and ids never
//! mix, whatever happens between runs: credentials taken away and back, a
//! type moved either way (one GitLab down meanwhile), leftovers of a killed
//! run, one GitLab's url spelt two ways, a SIGKILL at every request, an
//! attacker's credentials directory. Both fakes give the same runner ids;
//! `leaks` looks for one's secrets in every request the other saw.
use crate::gitlabs::{Two, authority, template, two, types_of};
use crate::support::*;

pub const SECOND_PAT: &str = "glpat-SecondSecondSecond987654";

/// two(), both with access tokens, the second's PAT its own.
fn two_pats() -> Two {
    let t = two();
    {
        let mut w = t.second.world();
        let pat = w.pats.remove(ADMIN_PAT).unwrap();
        w.pats.insert(SECOND_PAT.into(), pat);
    }
    t.p.write("access-token", ADMIN_PAT);
    t.p.write(&t.gpu_access(), SECOND_PAT);
    t
}

/// Secrets of `from` seen in any request `to` received (params, headers).
fn leaks(from: &FakeGitlab, to: &FakeGitlab) -> Vec<String> {
    let secrets = from.world().secrets();
    let mine = to.world().secrets();
    let mut out = Vec::new();
    for q in to.world().requests.iter() {
        let mut hay = serde_json::Value::Object(q.params.clone()).to_string();
        for (k, v) in &q.headers {
            hay.push_str(&format!(" {k}={v}"));
        }
        hay.push_str(&q.target);
        for s in &secrets {
            if !mine.contains(s) && hay.contains(s.as_str()) {
                out.push(format!("{} carries {}", q.line(), s));
            }
        }
    }
    out
}

fn report(name: &str, t: &Two, r: &Run) {
    eprintln!(
        "=== {name}: code {}\nSTDERR:\n{}\nSTDOUT:\n{}",
        r.code, r.stderr, r.stdout
    );
    eprintln!("first lines: {:?}", t.first.world().lines());
    eprintln!("second lines: {:?}", t.second.world().lines());
    eprintln!("B->A leaks: {:?}", leaks(&t.second, &t.first));
    eprintln!("A->B leaks: {:?}", leaks(&t.first, &t.second));
    eprintln!(
        "first types {:?} second types {:?}",
        types_of(&t.first),
        types_of(&t.second)
    );
}

#[test]
fn credentials_taken_away_keep_the_second_gitlabs_tokens_off_the_first() {
    let t = two_pats();
    assert_code(&t.run(&[]), 0);
    t.clear_requests();
    std::fs::rename(
        t.p.path(&authority(&t.second)),
        t.p.dir
            .parent()
            .unwrap()
            .join(format!("moved-{}", std::process::id())),
    )
    .unwrap();
    let r = t.run(&[]);
    report("r1 run", &t, &r);
    t.clear_requests();
    for cmd in [["status"], ["doctor"], ["plan"]] {
        let r = t.run(&cmd);
        report(cmd[0], &t, &r);
        t.clear_requests();
    }
    let r = t.run(&["unregister", "--dry-run"]);
    report("unregister dry", &t, &r);
    t.clear_requests();
    let r = t.run(&["--prune"]);
    report("prune", &t, &r);
    assert!(leaks(&t.second, &t.first).is_empty());
}

#[test]
fn a_type_moved_back_never_sends_its_old_token_to_the_first() {
    let t = two_pats();
    assert_code(&t.run(&[]), 0);
    t.clear_requests();
    let text = template(&t.first.url(), &t.first.url());
    t.p.write("config.template", &text);
    let r = t.run(&[]);
    report("r2 run", &t, &r);
    assert!(leaks(&t.second, &t.first).is_empty());
}

#[test]
fn unregister_without_the_second_gitlabs_credentials_sends_it_nothing_of_it() {
    let t = two_pats();
    assert_code(&t.run(&[]), 0);
    t.clear_requests();
    std::fs::rename(
        t.p.path(&authority(&t.second)),
        t.p.dir
            .parent()
            .unwrap()
            .join(format!("moved3-{}", std::process::id())),
    )
    .unwrap();
    let r = t.run(&["unregister"]);
    report("r3 unregister", &t, &r);
    assert!(leaks(&t.second, &t.first).is_empty());
}

#[test]
fn a_leftover_state_file_after_a_move_sends_no_token_across() {
    a_leftover_after_a_swap_sends_no_token_across("runner-data.json", "r4 run");
}

#[test]
fn a_leftover_config_file_after_a_move_sends_no_token_across() {
    a_leftover_after_a_swap_sends_no_token_across("config.toml", "r5 run");
}

/// A leftover temporary copy of `file` (a run killed while writing it),
/// then batch moves to the second GitLab and gpu to the first: gpu's
/// leftover token (from the second) is the first's type now. Neither
/// GitLab sees the other's token.
fn a_leftover_after_a_swap_sends_no_token_across(file: &str, label: &str) {
    let t = two_pats();
    assert_code(&t.run(&[]), 0);
    t.clear_requests();
    let copy = t.p.read(file);
    t.p.write(&format!(".{file}.tmp-999999999"), &copy);
    let text = moved(
        &moved(
            &template(&t.first.url(), &t.second.url()),
            "batch",
            &t.first,
            &t.second,
        ),
        "gpu",
        &t.second,
        &t.first,
    );
    t.p.write("config.template", &text);
    let r = t.run(&[]);
    report(label, &t, &r);
    assert!(leaks(&t.second, &t.first).is_empty());
    assert!(leaks(&t.first, &t.second).is_empty());
}

/// `text` with the `ty` block's url moved from GitLab `from` to `to`.
fn moved(text: &str, ty: &str, from: &FakeGitlab, to: &FakeGitlab) -> String {
    let block = |gl: &FakeGitlab| format!("name = \"{{hostname}}-{ty}\"\n  url = \"{}\"", gl.url());
    text.replacen(&block(from), &block(to), 1)
}

fn batch_to_second(t: &Two) -> String {
    moved(
        &template(&t.first.url(), &t.second.url()),
        "batch",
        &t.first,
        &t.second,
    )
}

fn block_token(config: &str, name: &str) -> (String, String) {
    let table: toml::Table = config.parse().unwrap();
    let b = table["runners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"].as_str() == Some(name))
        .unwrap()
        .clone();
    (
        b["url"].as_str().unwrap().to_string(),
        b["token"].as_str().unwrap().to_string(),
    )
}

#[test]
fn a_type_moved_to_the_second_sends_it_no_token_of_the_first() {
    let t = two_pats();
    assert_code(&t.run(&[]), 0);
    t.clear_requests();
    t.p.write("config.template", &batch_to_second(&t));
    let r = t.run(&[]);
    report("r6 run", &t, &r);
    assert!(leaks(&t.first, &t.second).is_empty());
}

#[test]
fn a_type_moved_to_a_gitlab_that_is_down_gets_no_old_token_in_its_block() {
    let t = two_pats();
    assert_code(&t.run(&[]), 0);
    let batch_tok = t.p.state_token("batch");
    t.clear_requests();
    t.p.write("config.template", &batch_to_second(&t));
    t.second_down();
    let r = t.run(&["--wait", "1s", "--offline-ok"]);
    report("r6b run", &t, &r);
    let (url, tok) = block_token(&t.p.read("config.toml"), "node12-batch");
    eprintln!(
        "batch block url {url} token==A's old batch token: {}",
        tok == batch_tok
    );
    assert!(
        !(url == t.second.url() && tok == batch_tok),
        "A's token in B's block"
    );
}

#[test]
fn credentials_gone_then_back_send_no_token_across() {
    let t = two_pats();
    assert_code(&t.run(&[]), 0);
    let dir = t.p.path(&authority(&t.second));
    let away =
        t.p.dir
            .parent()
            .unwrap()
            .join(format!("away7-{}", std::process::id()));
    std::fs::rename(&dir, &away).unwrap();
    let r = t.run(&[]);
    report("r7 gone", &t, &r);
    eprintln!("state {}", t.p.read("runner-data.json"));
    t.clear_requests();
    std::fs::rename(&away, &dir).unwrap();
    let r = t.run(&[]);
    report("r7 back", &t, &r);
    eprintln!("state {}", t.p.read("runner-data.json"));
    assert!(leaks(&t.first, &t.second).is_empty());
}

#[test]
fn every_command_without_the_second_gitlabs_credentials_keeps_its_tokens_off_the_first() {
    let mut bad = Vec::new();
    // (--stateless has no state to say a block's token was the second
    // GitLab's: without its credentials the block is --api-url's again, the
    // documented fallback; see the README)
    for cmd in [
        vec!["status"],
        vec!["doctor"],
        vec!["plan"],
        vec!["unregister", "--dry-run"],
        vec!["--dry-run"],
    ] {
        let t = two_pats();
        assert_code(&t.run(&[]), 0);
        if cmd[0] == "--stateless" {
            std::fs::remove_file(t.p.path("runner-data.json")).unwrap();
        }
        t.clear_requests();
        let dir = t.p.path(&authority(&t.second));
        std::fs::remove_dir_all(&dir).unwrap();
        let r = t.run(&cmd);
        let l = leaks(&t.second, &t.first);
        eprintln!(
            "=== {cmd:?}: code {} leaks {l:?}\n first lines {:?}\n{}",
            r.code,
            t.first.world().lines(),
            r.stderr
        );
        if !l.is_empty() {
            bad.push(format!("{cmd:?}"));
        }
    }
    assert!(bad.is_empty(), "{bad:?}");
}

#[test]
fn one_gitlab_spelt_two_ways_is_one_gitlab() {
    // a 4th block, mpi, on the second GitLab spelled with port 0PORT
    let t = two_pats();
    let port = t.second.url().rsplit(':').next().unwrap().to_string();
    let odd = format!("http://127.0.0.1:0{port}");
    let text = format!(
        "{}\n[[runners]]\n  name = \"{{hostname}}-mpi\"\n  url = \"{odd}\"\n  token = \"{{mpi}}\"\n  executor = \"shell\"\n",
        template(&t.first.url(), &t.second.url())
    );
    t.p.write("config.template", &text);
    t.p.write(
        "runner-data.json",
        "{\"shell\": {}, \"batch\": {}, \"gpu\": {}, \"mpi\": {}}\n",
    );
    let r = t.run(&[]);
    report("r9 first", &t, &r);
    eprintln!("state {}", t.p.read("runner-data.json"));
    t.clear_requests();
    let r = t.run(&[]);
    report("r9 second", &t, &r);
    assert!(leaks(&t.first, &t.second).is_empty());
}

fn chown(p: &std::path::Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
}

#[test]
fn another_users_credentials_directory_is_refused() {
    use std::os::unix::fs::symlink;
    // a: owned by nobody, 0700
    let t = two_pats();
    let dir = t.p.path(&authority(&t.second));
    chown(&dir, 65534);
    let r = t.run(&[]);
    eprintln!("=== owned by nobody: {} {}", r.code, r.stderr);
    assert_eq!(r.code, 77);
    assert!(t.first.world().requests.is_empty());
    // b: symlink to a dir owned by nobody under /tmp
    let t = two_pats();
    let dir = t.p.path(&authority(&t.second));
    let evil = std::path::PathBuf::from(format!("/tmp/r18-evil-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&evil);
    std::fs::rename(&dir, &evil).unwrap();
    chown(&evil, 65534);
    symlink(&evil, &dir).unwrap();
    let r = t.run(&[]);
    eprintln!("=== symlink to nobody's: {} {}", r.code, r.stderr);
    assert_eq!(r.code, 77);
    // c: symlink to root's dir: allowed?
    chown(&evil, 0);
    let r = t.run(&[]);
    eprintln!("=== symlink to root's: {} {}", r.code, r.stderr);
    // d: symlink owned by nobody to root's dir
    std::fs::remove_file(&dir).unwrap();
    symlink(&evil, &dir).unwrap();
    chown(&dir, 65534);
    let r = t.run(&["status"]);
    eprintln!("=== nobody's symlink: {} {}", r.code, r.stderr);
    assert_eq!(r.code, 77);
    // e: admin-token in the dir a symlink to a root file
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&evil, &dir).unwrap();
    let tok = dir.join("admin-token");
    let real = t.p.path("gpu-real-admin");
    std::fs::rename(&tok, &real).unwrap();
    symlink(&real, &tok).unwrap();
    let r = t.run(&[]);
    eprintln!("=== token symlink: {} {}", r.code, r.stderr);
    assert_ne!(r.code, 0);
    // f: dir group-readable 0750, token 0640 group root
    std::fs::remove_file(&tok).unwrap();
    std::fs::rename(&real, &tok).unwrap();
    chmod(&tok, 0o640);
    let r = t.run(&[]);
    eprintln!("=== token 0640: {} {}", r.code, r.stderr);
    assert_eq!(r.code, 77);
    let _ = std::fs::remove_dir_all(&evil);
}

#[test]
fn credentials_an_attacker_plants_are_refused() {
    // $CREDENTIALS_DIRECTORY holding the second's admin token; dir absent
    let t = two_pats();
    let dir = t.p.path(&authority(&t.second));
    let creds = t.p.path("creds");
    std::fs::create_dir(&creds).unwrap();
    chmod(&creds, 0o700);
    let name = authority(&t.second).replace(':', "_");
    std::fs::rename(
        dir.join("admin-token"),
        creds.join(format!("{name}.admin-token")),
    )
    .unwrap();
    std::fs::rename(
        dir.join("access-token"),
        creds.join(format!("{name}.access-token")),
    )
    .unwrap();
    std::fs::remove_dir(&dir).unwrap();
    let mut c = command(&t.p);
    c.env("CREDENTIALS_DIRECTORY", &creds);
    c.args(["--api-url", &t.first.url(), "--prefix"])
        .arg(&t.p.dir)
        .args(["--hostname", HOST, "--wait", "5s", "--timeout", "5s"]);
    let r = run_cmd(c);
    report("r11 systemd run", &t, &r);
    assert_code(&r, 0);
    t.clear_requests();
    // then an admin runs status from a shell: no $CREDENTIALS_DIRECTORY
    let r = t.run(&["status"]);
    report("r11 status from shell", &t, &r);
    assert!(leaks(&t.second, &t.first).is_empty());
}

fn run_hooked_on(t: &Two, hooked: &FakeGitlab, n: usize, phase: Phase, then: Then) -> Run {
    let pid: Pid = Default::default();
    {
        let mut w = hooked.world();
        let base = w.runner_requests().count();
        w.hooks.push(Hook {
            nth: base + n,
            phase,
            signal: Some((pid.clone(), "KILL")),
            then,
        });
    }
    let mut c = command(&t.p);
    c.args(["--api-url", &t.first.url(), "--prefix"])
        .arg(&t.p.dir)
        .args(["--hostname", HOST, "--wait", "5s", "--timeout", "5s"]);
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    pid.store(child.id(), std::sync::atomic::Ordering::SeqCst);
    let out = child.wait_with_output().unwrap();
    hooked.world().hooks.clear();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

fn count(gl: &FakeGitlab, d: &str) -> usize {
    gl.world()
        .runners
        .values()
        .filter(|r| r.description == d)
        .count()
}

fn valid_on(config: &str, name: &str, gl: &FakeGitlab) -> bool {
    let (url, tok) = block_token(config, name);
    url == gl.url() && gl.world().runners.values().any(|r| r.token == tok)
}

#[test]
fn sigkill_at_every_request_of_both_gitlabs_loses_nothing() {
    let mut fails = Vec::new();
    for heal in [false, true] {
        let setup = || {
            let t = two_pats();
            if heal {
                assert_code(&t.run(&[]), 0);
                for gl in [&t.first, &t.second] {
                    let ids: Vec<u64> = gl.world().runners.keys().copied().collect();
                    for id in ids {
                        gl.world().rotate(id);
                    }
                }
            }
            t.clear_requests();
            t
        };
        let t = setup();
        assert_code(&t.run(&[]), 0);
        let (la, lb) = (t.first.world().lines(), t.second.world().lines());
        drop(t);
        for (which, lines) in [(0, la), (1, lb)] {
            for (n, line) in lines.iter().enumerate() {
                for phase in [Phase::Arrival, Phase::Acted, Phase::Answered] {
                    let t = setup();
                    let then = if phase == Phase::Answered {
                        Then::Continue
                    } else {
                        Then::Drop
                    };
                    let hooked = if which == 0 { &t.first } else { &t.second };
                    let killed = run_hooked_on(&t, hooked, n, phase, then);
                    let again = t.run(&[]);
                    let cfg = t.p.read("config.toml");
                    let ok = again.code == 0
                        && count(&t.first, "node12-shell") == 1
                        && count(&t.first, "node12-batch") == 1
                        && count(&t.second, "node12-gpu") == 1
                        && valid_on(&cfg, "node12-gpu", &t.second)
                        && valid_on(&cfg, "node12-shell", &t.first)
                        && valid_on(&cfg, "node12-batch", &t.first)
                        && leaks(&t.first, &t.second).is_empty()
                        && leaks(&t.second, &t.first).is_empty();
                    if !ok {
                        fails.push(format!("heal {heal} gitlab {which} #{n} {line} {phase:?}: again {} shell {} batch {} gpu {} leaks {:?} {:?}\n{}\n{}", again.code, count(&t.first, "node12-shell"), count(&t.first, "node12-batch"), count(&t.second, "node12-gpu"), leaks(&t.first, &t.second), leaks(&t.second, &t.first), killed.stderr, again.stderr));
                    }
                }
            }
        }
    }
    assert!(fails.is_empty(), "{}", fails.join("\n\n"));
}

#[test]
fn offline_ok_keeps_no_config_toml_that_was_not_there() {
    let t = two_pats();
    t.second_down();
    assert!(!t.p.exists("config.toml"));
    let r = t.run(&["--wait", "1s", "--offline-ok"]);
    report("r13", &t, &r);
    if t.p.exists("config.toml") {
        eprintln!("config.toml:\n{}", t.p.read("config.toml"));
    }
    assert_ne!(
        r.code, 0,
        "first run, no config.toml before, a GitLab down: --offline-ok should not apply"
    );
}
