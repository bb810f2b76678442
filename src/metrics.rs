// SPDX-License-Identifier: MIT
//! Metrics for node_exporter's textfile collector (`--metrics-file`): the
//! values a `run` or `status` produced ([`Facts`], [`Report`]), their
//! Prometheus text exposition ([`render`], pure), and the one write at the
//! end of the command ([`write`]: `0644`, atomic, no secret, through real
//! directories only, whoever owns them; a failure only warns).

use crate::cli::Command;
use crate::fsutil;
use std::path::Path;
use std::time::Duration;

const PREFIX: &str = "gitlab_runner_auth_";

/// One runner type, as the command left it (a failed run: as it found it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    pub ty: String,
    pub id: Option<u64>,
    pub valid: bool,
    /// When its token expires (Unix seconds); `None`: never, or unknown.
    pub expires_at: Option<i64>,
    /// Several GitLabs: its GitLab's url (a `gitlab` label); `None` with
    /// one GitLab.
    pub gitlab: Option<String>,
}

/// An access token this host holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub file: String,
    /// `admin-token` or `access-token`.
    pub role: &'static str,
    /// Its expiry (Unix seconds); `None`: never, or GitLab cannot say.
    pub expires_at: Option<i64>,
    /// Several GitLabs: the GitLab it is for (a `gitlab` label).
    pub gitlab: Option<String>,
}

/// What a command learned, filled in as it goes: a command that fails
/// leaves what it knew by then.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Facts {
    pub runners: Vec<Runner>,
    pub tokens: Vec<Token>,
    /// `run`: how many of each action it took (`created`, …); `None` when
    /// it did not finish applying its plan, and for `status`.
    pub actions: Option<Vec<(&'static str, usize)>>,
}

/// Everything the file says: how the command ended, and its facts.
#[derive(Debug)]
pub struct Report<'a> {
    /// `run` or `status`.
    pub command: &'static str,
    /// When it ended (Unix seconds).
    pub finished: i64,
    pub duration: Duration,
    pub exit_code: i32,
    pub facts: &'a Facts,
}

/// The `command` label of a command that writes metrics: `run` (not
/// `--dry-run`) and `status`.
pub fn reported(command: Command, dry_run: bool) -> Option<&'static str> {
    match command {
        Command::Run if !dry_run => Some("run"),
        Command::Status => Some("status"),
        _ => None,
    }
}

type Labels = Vec<(&'static str, String)>;

/// One metric family: `# HELP`, `# TYPE` (all gauges) and its samples; a
/// family without samples is left out.
fn family(out: &mut String, name: &str, help: &str, samples: &[(Labels, String)]) {
    if samples.is_empty() {
        return;
    }
    let help = help.replace('\\', r"\\").replace('\n', r"\n");
    out.push_str(&format!("# HELP {PREFIX}{name} {help}\n"));
    out.push_str(&format!("# TYPE {PREFIX}{name} gauge\n"));
    for (labels, value) in samples {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        out.push_str(&format!("{PREFIX}{name}{{{}}} {value}\n", labels.join(",")));
    }
}

/// A label value as the text format writes it: `\`, `"` and a newline
/// escaped.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

/// The Prometheus text exposition of `r`. An expiry that never comes
/// (a token without one) has no sample; nor has a runner id not known.
pub fn render(r: &Report) -> String {
    let f = r.facts;
    let cmd = || vec![("command", r.command.to_string())];
    let one = |v: String| vec![(cmd(), v)];
    let mut out = String::new();
    family(
        &mut out,
        "last_run_timestamp_seconds",
        "When gitlab-runner-auth last ended this command, in seconds since the epoch.",
        &one(r.finished.to_string()),
    );
    family(
        &mut out,
        "last_run_duration_seconds",
        "How long gitlab-runner-auth took the last time it ran this command.",
        &one(format!("{:.3}", r.duration.as_secs_f64())),
    );
    family(
        &mut out,
        "last_run_success",
        "1 if gitlab-runner-auth exited 0 the last time it ran this command, else 0.",
        &one(u8::from(r.exit_code == 0).to_string()),
    );
    family(
        &mut out,
        "last_run_exit_code",
        "The exit code of gitlab-runner-auth the last time it ran this command (gitlab-runner-auth(8), EXIT STATUS).",
        &one(r.exit_code.to_string()),
    );
    let actions: Vec<(Labels, String)> = f
        .actions
        .iter()
        .flatten()
        .map(|(action, n)| {
            let mut l = cmd();
            l.push(("action", action.to_string()));
            (l, n.to_string())
        })
        .collect();
    family(
        &mut out,
        "last_run_actions",
        "How many of each action the last run took (tokens verified, runners created, tokens rotated, ...).",
        &actions,
    );
    // several GitLabs: each runner's and token's GitLab
    let gitlab = |l: &mut Labels, g: &Option<String>| {
        if let Some(g) = g {
            l.push(("gitlab", g.clone()));
        }
    };
    let ty = |r: &Runner| {
        let mut l = vec![("type", r.ty.clone())];
        gitlab(&mut l, &r.gitlab);
        l
    };
    let info: Vec<(Labels, String)> = f
        .runners
        .iter()
        .filter_map(|x| {
            let mut l = ty(x);
            l.push(("runner_id", x.id?.to_string()));
            Some((l, "1".to_string()))
        })
        .collect();
    family(
        &mut out,
        "runner_info",
        "This host's runner of each type, by its GitLab runner id.",
        &info,
    );
    let valid: Vec<(Labels, String)> = f
        .runners
        .iter()
        .map(|x| (ty(x), u8::from(x.valid).to_string()))
        .collect();
    family(
        &mut out,
        "runner_token_valid",
        "1 if the runner's token is valid (verified, or just issued by GitLab), else 0.",
        &valid,
    );
    let expiry: Vec<(Labels, String)> = f
        .runners
        .iter()
        .filter_map(|x| Some((ty(x), x.expires_at?.to_string())))
        .collect();
    family(
        &mut out,
        "runner_token_expiry_timestamp_seconds",
        "When the runner's token expires, in seconds since the epoch (no sample: it never expires).",
        &expiry,
    );
    let tokens: Vec<(Labels, String)> = f
        .tokens
        .iter()
        .filter_map(|t| {
            let mut l = vec![("file", t.file.clone()), ("role", t.role.to_string())];
            gitlab(&mut l, &t.gitlab);
            Some((l, t.expires_at?.to_string()))
        })
        .collect();
    family(
        &mut out,
        "access_token_expiry_timestamp_seconds",
        "When the access token in this file expires, in seconds since the epoch (no sample: it never expires, or GitLab cannot say).",
        &tokens,
    );
    out
}

/// Write `r` to `path` (`0644`, atomically, through real directories only:
/// see [`fsutil::write_public`]). A failure is a warning: the command's own
/// result stands.
pub fn write(path: &Path, r: &Report) {
    match fsutil::write_public(path, render(r).as_bytes()) {
        Ok(()) => log::debug!("wrote {}", path.display()),
        Err(e) => log::warn!("{e}; the metrics in {} were not updated", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            runners: vec![
                Runner {
                    ty: "batch".into(),
                    id: Some(102),
                    valid: true,
                    expires_at: None,
                    gitlab: None,
                },
                Runner {
                    ty: "shell".into(),
                    id: Some(101),
                    valid: true,
                    expires_at: Some(1_767_225_600),
                    gitlab: None,
                },
                Runner {
                    ty: "gpu".into(),
                    id: None,
                    valid: false,
                    expires_at: None,
                    gitlab: None,
                },
            ],
            tokens: vec![
                Token {
                    file: "/etc/gitlab-runner/admin-token".into(),
                    role: "admin-token",
                    expires_at: None,
                    gitlab: None,
                },
                Token {
                    file: "/etc/gitlab-runner/access-token".into(),
                    role: "access-token",
                    expires_at: Some(1_790_000_000),
                    gitlab: None,
                },
            ],
            actions: Some(vec![("verified", 1), ("created", 1), ("rotated", 0)]),
        }
    }

    fn report<'a>(command: &'static str, exit_code: i32, facts: &'a Facts) -> Report<'a> {
        Report {
            command,
            finished: 1_760_000_000,
            duration: Duration::from_millis(1234),
            exit_code,
            facts,
        }
    }

    #[test]
    fn a_run_in_the_text_format() {
        let f = facts();
        let want = r#"# HELP gitlab_runner_auth_last_run_timestamp_seconds When gitlab-runner-auth last ended this command, in seconds since the epoch.
# TYPE gitlab_runner_auth_last_run_timestamp_seconds gauge
gitlab_runner_auth_last_run_timestamp_seconds{command="run"} 1760000000
# HELP gitlab_runner_auth_last_run_duration_seconds How long gitlab-runner-auth took the last time it ran this command.
# TYPE gitlab_runner_auth_last_run_duration_seconds gauge
gitlab_runner_auth_last_run_duration_seconds{command="run"} 1.234
# HELP gitlab_runner_auth_last_run_success 1 if gitlab-runner-auth exited 0 the last time it ran this command, else 0.
# TYPE gitlab_runner_auth_last_run_success gauge
gitlab_runner_auth_last_run_success{command="run"} 1
# HELP gitlab_runner_auth_last_run_exit_code The exit code of gitlab-runner-auth the last time it ran this command (gitlab-runner-auth(8), EXIT STATUS).
# TYPE gitlab_runner_auth_last_run_exit_code gauge
gitlab_runner_auth_last_run_exit_code{command="run"} 0
# HELP gitlab_runner_auth_last_run_actions How many of each action the last run took (tokens verified, runners created, tokens rotated, ...).
# TYPE gitlab_runner_auth_last_run_actions gauge
gitlab_runner_auth_last_run_actions{command="run",action="verified"} 1
gitlab_runner_auth_last_run_actions{command="run",action="created"} 1
gitlab_runner_auth_last_run_actions{command="run",action="rotated"} 0
# HELP gitlab_runner_auth_runner_info This host's runner of each type, by its GitLab runner id.
# TYPE gitlab_runner_auth_runner_info gauge
gitlab_runner_auth_runner_info{type="batch",runner_id="102"} 1
gitlab_runner_auth_runner_info{type="shell",runner_id="101"} 1
# HELP gitlab_runner_auth_runner_token_valid 1 if the runner's token is valid (verified, or just issued by GitLab), else 0.
# TYPE gitlab_runner_auth_runner_token_valid gauge
gitlab_runner_auth_runner_token_valid{type="batch"} 1
gitlab_runner_auth_runner_token_valid{type="shell"} 1
gitlab_runner_auth_runner_token_valid{type="gpu"} 0
# HELP gitlab_runner_auth_runner_token_expiry_timestamp_seconds When the runner's token expires, in seconds since the epoch (no sample: it never expires).
# TYPE gitlab_runner_auth_runner_token_expiry_timestamp_seconds gauge
gitlab_runner_auth_runner_token_expiry_timestamp_seconds{type="shell"} 1767225600
# HELP gitlab_runner_auth_access_token_expiry_timestamp_seconds When the access token in this file expires, in seconds since the epoch (no sample: it never expires, or GitLab cannot say).
# TYPE gitlab_runner_auth_access_token_expiry_timestamp_seconds gauge
gitlab_runner_auth_access_token_expiry_timestamp_seconds{file="/etc/gitlab-runner/access-token",role="access-token"} 1790000000
"#;
        assert_eq!(render(&report("run", 0, &f)), want);
    }

    #[test]
    fn a_failure_and_status_and_nothing_known() {
        // a run that failed before it knew anything: only how it ended
        let none = Facts::default();
        let text = render(&report("run", 69, &none));
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                r#"gitlab_runner_auth_last_run_timestamp_seconds{command="run"} 1760000000"#,
                r#"gitlab_runner_auth_last_run_duration_seconds{command="run"} 1.234"#,
                r#"gitlab_runner_auth_last_run_success{command="run"} 0"#,
                r#"gitlab_runner_auth_last_run_exit_code{command="run"} 69"#,
            ]
        );
        assert_eq!(text.matches("# HELP ").count(), 4);
        assert_eq!(text.matches("# TYPE ").count(), 4);
        // status takes no action
        let f = Facts {
            actions: None,
            ..facts()
        };
        let text = render(&report("status", 77, &f));
        assert!(!text.contains("last_run_actions"), "{text}");
        assert!(text.contains("gitlab_runner_auth_last_run_success{command=\"status\"} 0\n"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn label_values_are_escaped() {
        let f = Facts {
            tokens: vec![Token {
                file: "/srv/a \"b\"\\c\nd".into(),
                role: "access-token",
                expires_at: Some(5),
                gitlab: None,
            }],
            ..Facts::default()
        };
        let text = render(&report("status", 0, &f));
        assert!(
            text.contains(
                r#"gitlab_runner_auth_access_token_expiry_timestamp_seconds{file="/srv/a \"b\"\\c\nd",role="access-token"} 5"#
            ),
            "{text}"
        );
        assert_eq!(text.lines().count(), 4 * 3 + 3);
    }

    #[test]
    fn run_and_status_report_dry_runs_and_the_rest_do_not() {
        let cases = [
            (Command::Run, false, Some("run")),
            (Command::Run, true, None),
            (Command::Status, false, Some("status")),
            (Command::Plan, false, None),
            (Command::Unregister, false, None),
            (Command::Import, false, None),
            (Command::Doctor, false, None),
        ];
        for (c, dry, want) in cases {
            assert_eq!(reported(c, dry), want, "{c:?} {dry}");
        }
    }
}
