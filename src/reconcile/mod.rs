// SPDX-License-Identifier: MIT
//! The reconcile, in the shape of its job: check every input before the
//! network (`inputs`), read everything (`observe`), decide what to change
//! (`plan`, pure), then apply it (`apply`, the only writer) or print it.
//! `run`, `plan`, `status` and `unregister` (in `commands`) all go this
//! way; the engine runs for one GitLab and knows no command.

mod apply;
mod decide;
pub mod gitlabs;
pub mod inputs;
mod issue;
mod observe;
mod plan;

pub use apply::Applied;
pub use inputs::Inputs;
pub use observe::{AccessToken, Observation};
pub use plan::Plan;

use crate::clock;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::gitlab::Client;
use crate::metrics;
use crate::settings::Settings;
use crate::trust;

/// The engine, started for one GitLab: the directories trusted, the lock
/// held (unless read-only), the inputs checked, a client made. Every
/// command that talks to GitLab goes through it; it knows no command.
pub struct Engine {
    pub inputs: Inputs,
    pub client: Client,
    /// When the run started (seconds since the epoch).
    pub now: i64,
    _lock: Option<fsutil::Lock>,
}

impl Engine {
    /// `Ok(None)`: no API URL, nothing to do (the notice is logged).
    pub fn start(s: &Settings, read_only: bool) -> Result<Option<Engine>> {
        if s.api_root.is_none() {
            log::info!(
                "not configured: no GitLab API URL (set GITLAB_RUNNER_AUTH_API_URL in /etc/default/gitlab-runner-auth or pass --api-url); nothing to do"
            );
            return Ok(None);
        }
        check_directories(s)?;
        let t0 = std::time::Instant::now();
        let lock = if read_only {
            None
        } else {
            Some(fsutil::lock(&s.lock_path, s.wait)?)
        };
        Self::open(s, read_only, lock, t0).map(Some)
    }

    /// Take the prefix's lock for a command that starts several engines
    /// (one per GitLab) with [`Engine::open`]; `None` when read-only.
    pub fn lock(s: &Settings, read_only: bool) -> Result<Option<fsutil::Lock>> {
        check_directories(s)?;
        if read_only {
            return Ok(None);
        }
        fsutil::lock(&s.lock_path, s.wait).map(Some)
    }

    /// Start the engine for the GitLab of `s` under a lock the command
    /// holds (or read-only); `t0` is when the command began waiting.
    pub fn open(
        s: &Settings,
        read_only: bool,
        lock: Option<fsutil::Lock>,
        t0: std::time::Instant,
    ) -> Result<Engine> {
        let api_base = s
            .api_root
            .as_deref()
            .ok_or_else(|| Error::internal("an engine without a GitLab"))?;
        let inputs = Inputs::load(s)?;
        inputs::keep_private(s, read_only)?;
        // one request a runner (a verify or a create): this run's share
        let client = Client::new(api_base, s.timeout, s.wait, s.ca_file.as_deref())?
            .since(t0)
            .sharing(inputs.state.entries.len());
        Ok(Engine {
            inputs,
            client,
            now: clock::now(),
            _lock: lock,
        })
    }

    /// The run waited `d` (`--spread`) before its first request: its
    /// deadlines and its clock count from now.
    pub fn waited(&mut self, d: std::time::Duration) {
        self.client.spread_by(d);
        self.now = clock::now();
    }

    /// Read everything (no write to GitLab or disk); `prune` lists this
    /// host's runners.
    pub fn observe(&self, s: &Settings, prune: bool) -> Result<Observation> {
        observe::observe(s, &self.inputs, &self.client, self.now, prune)
    }

    /// `--prune` lists runners with the access token: a command that
    /// starts several engines checks each before any applies.
    pub fn check_prune(&self, s: &Settings) -> Result<()> {
        if s.prune && self.inputs.access.is_none() {
            return Err(observe::prune_needs_access(s));
        }
        Ok(())
    }

    /// What a run would change, from an observation (pure).
    pub fn plan(&self, s: &Settings, obs: &Observation) -> Result<Plan> {
        plan::plan(s, &self.inputs, obs)
    }

    /// What `unregister` would delete and clear (pure).
    pub fn unregister(&self, s: &Settings, obs: &Observation) -> Result<Plan> {
        plan::unregister(s, &self.inputs, obs)
    }

    /// Apply `plan`: the only writer. `verified` counts the tokens the
    /// observation found valid; `render` writes `config.toml`.
    pub fn apply(self, s: &Settings, plan: Plan, verified: usize, render: bool) -> Result<Applied> {
        apply::apply(
            s,
            &self.client,
            self.inputs,
            plan,
            self.now,
            verified,
            render,
        )
    }
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
pub fn metric_tokens(obs: &Observation) -> Vec<metrics::Token> {
    obs.tokens
        .iter()
        .map(|t| metrics::Token {
            file: t.file.display().to_string(),
            role: t.role,
            expires_at: token_expiry(t),
            gitlab: None,
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
                crate::untrusted::shown(&info.scopes.join(",")),
                t.role
            ));
        }
    }
    out
}

pub fn summary(text: &str) {
    log::info!(target: "gitlab_runner_auth::summary", "{text}");
}
