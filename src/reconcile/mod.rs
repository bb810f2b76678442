// SPDX-License-Identifier: MIT
//! The reconcile, in the shape of its job: check every input before the
//! network (`inputs`), read everything (`observe`), decide what to change
//! (`plan`, pure), then apply it (`apply`, the only writer) or print it.
//! `run`, `plan`, `status` and `unregister` all go this way.

mod apply;
mod decide;
pub mod inputs;
mod issue;
mod observe;
mod plan;

pub use apply::Applied;
pub use inputs::Inputs;
pub use observe::{AccessToken, Observation};
pub use plan::Plan;

use crate::cli::Command;
use crate::clock;
use crate::error::{Error, Kind, Result};
use crate::fsutil;
use crate::gitlab::{Client, Verified};
use crate::metrics::{self, Facts};
use crate::settings::Settings;
use crate::trust;

/// How a command ended; `main` turns it into the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No API URL: nothing was done.
    NotConfigured,
    /// `run` applied its plan.
    Ran { types: usize, applied: Applied },
    /// GitLab was unreachable; the existing `config.toml` was kept
    /// (`--offline-ok`).
    Offline,
    /// `plan` or `--dry-run`: whether anything would change.
    Planned { pending: bool },
    /// `status`: how many runner credentials are invalid or missing.
    Status { invalid: usize },
    /// `unregister` applied its plan.
    Unregistered(Applied),
    /// `import` wrote (or, with `--dry-run`, showed) the template and state.
    Imported,
    /// `doctor`: the exit code of the worst failed check (0: all ok).
    Doctor { code: i32 },
    /// `setup` wrote (or showed, or removed) the hook's files.
    Setup,
}

/// Run the command of `s`, noting in `facts` what the metrics report.
pub fn run(s: &Settings, facts: &mut Facts) -> Result<Outcome> {
    match s.command {
        Command::Doctor => return crate::doctor::run(s),
        Command::Import => return crate::import::run(s),
        Command::Setup => return crate::setup::run(s),
        _ => {}
    }
    let Some(api_base) = s.api_root.as_deref() else {
        log::info!(
            "not configured: no GitLab API URL (set GITLAB_RUNNER_AUTH_API_URL in /etc/default/gitlab-runner-auth or pass --api-url); nothing to do"
        );
        return Ok(Outcome::NotConfigured);
    };
    check_directories(s)?;
    let read_only = s.preview || s.command == Command::Status;
    let _lock = if read_only {
        None
    } else {
        Some(fsutil::lock(&s.lock_path, s.wait)?)
    };
    let inputs = Inputs::load(s)?;
    inputs::keep_private(s, read_only)?;
    let client = Client::new(api_base, s.timeout, s.wait, s.ca_file.as_deref())?;
    let now = clock::now();
    match s.command {
        Command::Status => {
            let obs = observe::observe(s, &inputs, &client, now, false)?;
            facts.tokens = metric_tokens(&obs);
            let start = if s.stateless {
                plan::plan(s, &inputs, &obs)?.start
            } else {
                None
            };
            facts.runners = crate::status::runners(&inputs, &obs, start.as_ref());
            crate::status::status(s, &inputs, &obs, start.as_ref())
        }
        Command::Unregister => {
            let obs = observe::observe(s, &inputs, &client, now, false)?;
            let plan = plan::unregister(s, &inputs, &obs)?;
            for t in &plan.types {
                let id = t.id.map_or(String::new(), |i| format!(" {i}"));
                log::warn!("{} runner{id}: {}", t.ty, t.observed);
            }
            if s.preview {
                return Ok(show(s, &plan));
            }
            if inputs.access.is_none() {
                log::warn!(
                    "without an access-token, runners are deleted with their own tokens from {}: this cannot check that they are this host's (a copy from another node would delete that node's runners)",
                    s.state_path.display()
                );
            }
            let applied = apply::apply(s, &client, inputs, plan, now, 0, false)?;
            let t = &applied.tally;
            summary(&format!(
                "unregister: {} runner(s) deleted{}{}",
                t.deleted,
                if applied.left.is_empty() {
                    String::new()
                } else {
                    format!(", not found: {}", applied.left.join(", "))
                },
                if s.stateless {
                    String::new()
                } else {
                    format!("; {} cleared", s.state_path.display())
                }
            ));
            Ok(Outcome::Unregistered(applied))
        }
        Command::Import | Command::Doctor | Command::Setup => {
            Err(Error::internal("dispatched above"))
        }
        Command::Run | Command::Plan => match reconcile(s, &client, inputs, now, facts) {
            Err(e)
                if matches!(e.kind(), Kind::Unreachable | Kind::Ambiguous)
                    && s.offline_ok
                    && s.config_path.is_file()
                    && !s.preview =>
            {
                log::warn!("{e}");
                log::warn!(
                    "GitLab is unreachable; keeping the existing {} (--offline-ok)",
                    s.config_path.display()
                );
                summary(&format!("offline: kept {}", s.config_path.display()));
                Ok(Outcome::Offline)
            }
            other => other,
        },
    }
}

/// Observe, plan, then apply (`run`) or print (`plan`).
fn reconcile(
    s: &Settings,
    client: &Client,
    inputs: Inputs,
    now: i64,
    facts: &mut Facts,
) -> Result<Outcome> {
    let obs = observe::observe(s, &inputs, client, now, s.prune)?;
    facts.tokens = metric_tokens(&obs);
    for w in token_warnings(&obs.tokens, now, s.warn_before.as_secs() as i64) {
        log::warn!("{w}");
    }
    let plan = plan::plan(s, &inputs, &obs)?;
    for t in &plan.types {
        let id = t.id.map_or(String::new(), |i| format!(" {i}"));
        log::info!("{} runner{id}: {}", t.ty, t.observed);
    }
    if s.preview {
        return Ok(show(s, &plan));
    }
    // what a failed apply leaves for the metrics: the types as observed
    let gitlab = if s.stateless {
        plan.start.as_ref()
    } else {
        None
    };
    facts.runners = crate::status::runners(&inputs, &obs, gitlab);
    let verified = if s.stateless {
        obs.held
            .iter()
            .filter(|(_, v)| matches!(v, Verified::Valid { .. }))
            .count()
    } else {
        obs.verified
            .values()
            .filter(|v| matches!(v, Verified::Valid { .. }))
            .count()
    };
    let types = inputs.state.entries.len();
    let applied = apply::apply(s, client, inputs, plan, now, verified, true)?;
    facts.runners = applied.runners.clone();
    facts.actions = Some(applied.tally.counts().to_vec());
    summary(&format!(
        "{types} runner{} ok ({}); {} {}",
        if types == 1 { "" } else { "s" },
        applied.tally.summary(),
        s.config_path.display(),
        if applied.wrote {
            "written"
        } else {
            "unchanged"
        }
    ));
    Ok(Outcome::Ran { types, applied })
}

/// Print a plan (text, or JSON with `--json`).
fn show(s: &Settings, plan: &Plan) -> Outcome {
    let api = s.gitlab_url.as_deref().unwrap_or("?");
    if s.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan.json(&s.config_path, api)).unwrap_or_default()
        );
    } else {
        print!("{}", plan.text(&s.config_path, api));
    }
    let pending = plan.pending();
    summary(&format!(
        "plan: {}",
        if pending {
            "changes pending"
        } else {
            "nothing to do"
        }
    ));
    Outcome::Planned { pending }
}

/// The prefix, the directory of `config.toml` and `$CREDENTIALS_DIRECTORY`
/// pass the trust rules before anything is read from them.
pub(crate) fn check_directories(s: &Settings) -> Result<()> {
    if !s.prefix.is_dir() {
        return Err(Error::config(format!(
            "prefix {} is not a directory",
            s.prefix.display()
        )));
    }
    trust::check_dir(&s.prefix)?;
    let config_dir = fsutil::dir_of(&s.config_path);
    if !config_dir.is_dir() {
        return Err(Error::write(
            &s.config_path,
            format!("its directory {} does not exist", config_dir.display()),
        ));
    }
    trust::check_dir(config_dir)?;
    if let Some(dir) = &s.credentials_dir {
        trust::check_dir(dir)?;
    }
    Ok(())
}

/// The access tokens an observation read, for the metrics.
fn metric_tokens(obs: &Observation) -> Vec<metrics::Token> {
    obs.tokens
        .iter()
        .map(|t| metrics::Token {
            file: t.file.display().to_string(),
            role: t.role,
            expires_at: token_expiry(t),
        })
        .collect()
}

/// The expiry of an access token (`expires_at` is a date, `2027-01-31`,
/// the token's last day is the one before; or a time).
pub fn token_expiry(t: &AccessToken) -> Option<i64> {
    let v = t.info.as_ref().ok()?.as_ref()?.expires_at.as_deref()?;
    clock::parse(v).or_else(|| clock::parse(&format!("{v}T00:00:00Z")))
}

/// What to tell the admin about the access tokens this host holds: one
/// expiring within `warn_before` seconds (GitLab 16+ caps them at a year,
/// and when one expires every node loses healing and creating), or one
/// lacking the scope its file is used for.
pub fn token_warnings(tokens: &[AccessToken], now: i64, warn_before: i64) -> Vec<String> {
    let mut out = Vec::new();
    for t in tokens {
        let Ok(Some(info)) = &t.info else { continue };
        let file = t.file.display();
        if let Some(exp) = token_expiry(t)
            && exp - now <= warn_before
        {
            let days = (exp - now).div_euclid(86_400);
            out.push(if exp <= now {
                format!("the access token in {file} expired on {}: replace it (a new one with the same scopes)", clock::format(exp))
            } else {
                format!(
                    "the access token in {file} expires on {} ({days} days left): replace it before then, or this host can no longer {} runners",
                    clock::format(exp),
                    if t.role == "admin-token" { "create" } else { "heal, tag or delete" }
                )
            });
        }
        let has = |s: &str| info.scopes.iter().any(|x| x == s);
        let (ok, need) = match t.role {
            "admin-token" => (has("create_runner") || has("api"), "create_runner (or api)"),
            _ => (has("api"), "api"),
        };
        if !info.scopes.is_empty() && !ok {
            out.push(format!(
                "the access token in {file} has scopes {} but its use as {} needs {need}: make one with that scope",
                info.scopes.join(","),
                t.role
            ));
        }
    }
    out
}

pub fn summary(text: &str) {
    log::info!(target: "gitlab_runner_auth::summary", "{text}");
}
