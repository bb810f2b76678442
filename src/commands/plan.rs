// SPDX-License-Identifier: MIT
//! `plan` (and `run --dry-run`): the run's plan, printed as text or JSON,
//! with read-only calls only; `Outcome::Planned` says whether anything
//! would change (exit 2).

use super::Outcome;
use crate::error::Result;
use crate::metrics::Facts;
use crate::reconcile::{Plan, summary};
use crate::settings::Settings;

/// `plan` is `run` in preview (`Settings::preview` is set for it).
pub fn run(s: &Settings, facts: &mut Facts) -> Result<Outcome> {
    super::run::run(s, facts)
}

/// Print a plan (text, or JSON with `--json`).
pub fn show(s: &Settings, plan: &Plan) -> Outcome {
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
