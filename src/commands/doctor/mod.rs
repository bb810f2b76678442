// SPDX-License-Identifier: MIT
//! `doctor`: check the whole installation, read-only, and say for each
//! problem the command or edit that fixes it. Every check runs, not only
//! up to the first failure: the installation (systemd, the settings file),
//! the files (the local trust rules, the template, the state), the kinds of
//! the token files, what the user gitlab-runner runs jobs as can read or
//! change, and GitLab (reachable, TLS, proxy, the API root, each
//! access token and runner token). It reuses the checks `run` makes, calling
//! them one by one where `run` stops at the first. It writes no file and
//! sends only reads and `POST /runners/verify`.

mod creds;
mod files;
mod install;
mod jobs;
mod remote;
mod tokens;

use crate::commands::Outcome;
use crate::error::{Error, Kind, Result};
use crate::settings::Settings;
use serde_json::json;

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// A problem `run` copes with, or one that will become a failure.
    Warn,
    /// A problem that stops `run`, or makes it fail later; its kind gives
    /// the exit code.
    Fail(Kind),
    /// Not checked: it does not apply here, or needs what failed before.
    Skip,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail(_) => "fail",
            Status::Skip => "skip",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub section: String,
    pub name: String,
    pub status: Status,
    /// What was found.
    pub found: String,
    /// The command or edit that fixes it.
    pub fix: Option<String>,
}

/// Every check, in order.
#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
    section: String,
}

impl Report {
    /// Checks added from now on belong to `section`.
    fn section(&mut self, section: impl Into<String>) {
        self.section = section.into();
    }

    fn add(&mut self, name: &str, status: Status, found: impl Into<String>, fix: Option<String>) {
        self.checks.push(Check {
            section: self.section.clone(),
            name: name.to_string(),
            status,
            found: found.into(),
            fix,
        });
    }

    fn ok(&mut self, name: &str, found: impl Into<String>) {
        self.add(name, Status::Ok, found, None);
    }

    fn skip(&mut self, name: &str, found: impl Into<String>) {
        self.add(name, Status::Skip, found, None);
    }

    fn warn(&mut self, name: &str, found: impl Into<String>, fix: impl Into<String>) {
        self.add(name, Status::Warn, found, Some(fix.into()));
    }

    fn fail(&mut self, name: &str, kind: Kind, found: impl Into<String>, fix: impl Into<String>) {
        self.add(name, Status::Fail(kind), found, Some(fix.into()));
    }

    /// A failure from one of the tool's own errors: its kind, and the fix
    /// its message names (`…; fix it with: chmod 600 …`), else `fix`.
    fn error(&mut self, name: &str, e: &Error, fix: Option<&str>) {
        let (found, named) = split_fix(&e.to_string());
        let as_root = found
            .contains("Permission denied")
            .then(|| "run it as root: sudo gitlab-runner-auth doctor".to_string());
        let fix = named.or_else(|| fix.map(String::from)).or(as_root);
        self.add(name, Status::Fail(e.kind()), found, fix);
    }

    fn count(&self, want: fn(Status) -> bool) -> usize {
        self.checks.iter().filter(|c| want(c.status)).count()
    }

    /// 0 when nothing failed, else the exit code of the worst failure.
    pub fn code(&self) -> i32 {
        self.checks
            .iter()
            .filter_map(|c| match c.status {
                Status::Fail(k) => Some(k),
                _ => None,
            })
            .min_by_key(|k| severity(*k))
            .map_or(0, Kind::exit_code)
    }

    /// The report as text: a line per check, the fix under it, a summary.
    pub fn text(&self, header: &str) -> String {
        let mut out = format!("{header}\n");
        let mut section = "";
        for c in &self.checks {
            if c.section != section {
                section = &c.section;
                out.push_str(&format!("\n{section}\n"));
            }
            out.push_str(&format!(
                "  {:<5} {:<17} {}\n",
                c.status.word(),
                c.name,
                c.found
            ));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("        fix: {fix}\n"));
            }
        }
        out.push_str(&format!("\n{}\n", self.summary()));
        out
    }

    /// `doctor: 20 ok, 1 warning, 2 failed, 1 skipped; exit 77`.
    pub fn summary(&self) -> String {
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        format!(
            "doctor: {} ok, {}, {} failed, {} skipped; exit {}",
            self.count(|s| s == Status::Ok),
            plural(self.count(|s| s == Status::Warn), "warning", "warnings"),
            self.count(|s| matches!(s, Status::Fail(_))),
            self.count(|s| s == Status::Skip),
            self.code()
        )
    }

    /// The report as JSON, for automation.
    pub fn json(&self, settings: serde_json::Value) -> serde_json::Value {
        let checks: Vec<_> = self
            .checks
            .iter()
            .map(|c| {
                json!({
                    "section": c.section,
                    "check": c.name,
                    "status": c.status.word(),
                    "found": c.found,
                    "fix": c.fix,
                    "exit_code": match c.status {
                        Status::Fail(k) => Some(k.exit_code()),
                        _ => None,
                    },
                })
            })
            .collect();
        json!({
            "settings": settings,
            "checks": checks,
            "ok": self.count(|s| s == Status::Ok),
            "warn": self.count(|s| s == Status::Warn),
            "fail": self.count(|s| matches!(s, Status::Fail(_))),
            "skip": self.count(|s| s == Status::Skip),
            "exit_code": self.code(),
        })
    }
}

/// Which failure decides the exit code when several failed: a bug, then a
/// refusal of the trust rules or of GitLab, configuration, bad data, an
/// output that cannot be written, GitLab unreachable.
fn severity(k: Kind) -> u8 {
    match k {
        Kind::Internal => 0,
        Kind::Denied => 1,
        Kind::Config => 2,
        Kind::Data => 3,
        Kind::Write => 4,
        Kind::Unreachable | Kind::Ambiguous => 5,
        Kind::LockBusy => 6,
        Kind::Usage => 7,
        Kind::Interrupted | Kind::Terminated => 8,
    }
}

/// Split one of the tool's messages into what was found and the fix it
/// names: `…; fix it with: CMD` (the trust rules), or `…; to …` (a message
/// that lists ways forward).
fn split_fix(msg: &str) -> (String, Option<String>) {
    for marker in ["; fix it with: ", "; to "] {
        if let Some(i) = msg.find(marker) {
            let fix = msg[i + 2..].trim_start_matches("fix it with: ");
            return (msg[..i].to_string(), Some(fix.to_string()));
        }
    }
    (msg.to_string(), None)
}

/// The settings this run checks, for the header and `--json`.
fn describe(s: &Settings) -> (String, serde_json::Value) {
    let api = s.gitlab_url.as_deref().unwrap_or("(none)");
    let mode = if s.stateless { "stateless" } else { "stateful" };
    let header = format!(
        "gitlab-runner-auth doctor: prefix {}, config {}, GitLab {api}, {mode}",
        s.prefix.display(),
        s.config_path.display()
    );
    let v = json!({
        "prefix": s.prefix.display().to_string(),
        "config": s.config_path.display().to_string(),
        "template": s.template_path.display().to_string(),
        "api_url": s.gitlab_url,
        "stateless": s.stateless,
    });
    (header, v)
}

/// Run `doctor`: every check, the report on stdout, the exit code of the
/// worst failure.
pub fn run(s: &Settings) -> Result<Outcome> {
    let mut r = Report::default();
    r.section("installation");
    let service = install::check(s, &mut r);
    let s = service.settings.as_ref().unwrap_or(s);
    r.section("files");
    let found = files::check(s, &service, &mut r);
    r.section("tokens");
    tokens::check(s, &found, &mut r);
    r.section("jobs");
    jobs::check(s, &service, &mut r);
    let gitlabs = match crate::reconcile::gitlabs::split(s) {
        Ok(g) => g,
        Err(e) => {
            r.section("gitlab");
            r.error("gitlabs", &e, None);
            vec![s.clone()]
        }
    };
    let mut secrets: Vec<String> = Vec::new();
    if crate::commands::per_gitlab(&gitlabs) {
        // several GitLabs: each GitLab's own tokens and runners, sent to it
        for g in &gitlabs {
            r.section(format!(
                "gitlab {}",
                g.gitlab_url.as_deref().unwrap_or_default()
            ));
            let mine = match g.gitlab.as_ref().and_then(|x| x.authority.as_deref()) {
                None => found.of_gitlab(g),
                Some(a) => {
                    let mine = files::other_gitlab(g, a, &found, &mut r);
                    tokens::check(g, &mine, &mut r);
                    mine
                }
            };
            remote::check(g, &mine, &service, &mut r);
            secrets.extend(mine.secrets().into_iter().map(String::from));
        }
    } else {
        r.section("gitlab");
        remote::check(s, &found, &service, &mut r);
    }
    let (header, settings) = describe(s);
    // what a check quotes (a settings value, a path) may hold a token
    let mut all = found.secrets();
    all.extend(secrets.iter().map(String::as_str));
    let shown = |t: String| crate::secret::mask_tokens(&t, &all);
    if s.json {
        println!(
            "{}",
            shown(serde_json::to_string_pretty(&r.json(settings)).unwrap_or_default())
        );
    } else {
        print!("{}", shown(r.text(&header)));
    }
    Ok(Outcome::Doctor { code: r.code() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_failure_decides_the_exit_code() {
        let mut r = Report::default();
        assert_eq!(r.code(), 0);
        r.ok("a", "fine");
        r.warn("b", "meh", "do x");
        r.skip("c", "n/a");
        assert_eq!(r.code(), 0, "warnings and skips are not failures");
        r.fail("d", Kind::Unreachable, "down", "wait");
        assert_eq!(r.code(), 69);
        r.fail("e", Kind::Config, "bad", "edit");
        assert_eq!(r.code(), 78);
        r.fail("f", Kind::Denied, "open", "chmod");
        r.fail("g", Kind::Data, "junk", "fix");
        assert_eq!(r.code(), 77);
        assert_eq!(
            r.summary(),
            "doctor: 1 ok, 1 warning, 4 failed, 1 skipped; exit 77"
        );
    }

    #[test]
    fn fixes_are_split_from_the_tools_messages() {
        let cases = [
            (
                "refusing /p/admin-token: it is accessible by group or others (mode 0644); fix it with: chmod 600 /p/admin-token",
                "refusing /p/admin-token: it is accessible by group or others (mode 0644)",
                Some("chmod 600 /p/admin-token"),
            ),
            (
                "refusing x: a runner token; to use it, a; to create, b",
                "refusing x: a runner token",
                Some("to use it, a; to create, b"),
            ),
            ("no fix here", "no fix here", None),
        ];
        for (msg, found, fix) in cases {
            assert_eq!(
                split_fix(msg),
                (found.to_string(), fix.map(String::from)),
                "{msg}"
            );
        }
    }

    #[test]
    fn text_has_a_line_per_check_and_the_fix_under_it() {
        let mut r = Report::default();
        r.section("files");
        r.ok("prefix", "/p: mode 0700");
        r.fail(
            "admin-token",
            Kind::Denied,
            "mode 0644",
            "chmod 600 /p/admin-token",
        );
        assert_eq!(
            r.text("head"),
            "head\n\nfiles\n  ok    prefix            /p: mode 0700\n  fail  admin-token       mode 0644\n        fix: chmod 600 /p/admin-token\n\ndoctor: 1 ok, 0 warnings, 1 failed, 0 skipped; exit 77\n"
        );
        let v = r.json(json!({}));
        assert_eq!(v["checks"][1]["exit_code"], 77);
        assert_eq!(v["checks"][0]["fix"], serde_json::Value::Null);
        assert_eq!(v["exit_code"], 77);
    }
}
