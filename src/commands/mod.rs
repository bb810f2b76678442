// SPDX-License-Identifier: MIT
//! The commands: what `main` calls. Each runs the engine (`reconcile`) as
//! it needs it and says how it ended in one [`Outcome`]; the engine never
//! calls back up.

pub mod doctor;
pub mod import;
pub mod plan;
pub mod run;
pub mod setup;
pub mod status;
pub mod unregister;

use crate::cli::Command;
use crate::error::Result;
use crate::metrics::Facts;
use crate::reconcile::Applied;
use crate::settings::Settings;

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

/// Whether a command goes GitLab by GitLab: the template names several,
/// or runner-data.json records an entry's GitLab (whose tokens must only
/// ever go there, and whose moved entries are new runners).
pub fn per_gitlab(gitlabs: &[Settings]) -> bool {
    gitlabs.len() > 1 || gitlabs.iter().any(|g| g.gitlab.is_some())
}

/// Run the command of `s`, noting in `facts` what the metrics report.
pub fn run(s: &Settings, facts: &mut Facts) -> Result<Outcome> {
    match s.command {
        Command::Doctor => doctor::run(s),
        Command::Import => import::run(s),
        Command::Setup => setup::run(s),
        Command::Status => status::run(s, facts),
        Command::Unregister => unregister::run(s),
        Command::Plan => plan::run(s, facts),
        Command::Run => run::run(s, facts),
    }
}

/// Several GitLabs: `<url>: `, said before a GitLab's summary line; with
/// one GitLab, nothing.
pub fn gitlab_prefix(s: &Settings) -> String {
    match (&s.gitlab, &s.gitlab_url) {
        (Some(_), Some(url)) => format!("{url}: "),
        _ => String::new(),
    }
}
