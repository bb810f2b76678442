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
    planned(plan.pending())
}

/// How a plan ended: its summary line, and the outcome (exit 2 when
/// something would change).
pub fn planned(pending: bool) -> Outcome {
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

/// Several GitLabs: print each GitLab's plan (`(url, plan)`, in order) as
/// one document (`--json`: every runner and change with its `gitlab`);
/// the `config.toml` diff is the last plan's. Whether anything would
/// change.
pub fn show_several(s: &Settings, plans: Vec<(String, Plan)>) -> bool {
    let pending = plans.iter().any(|(_, p)| p.pending());
    let last = plans.len().saturating_sub(1);
    if s.json {
        let mut runners = Vec::new();
        let mut changes = Vec::new();
        let mut diff = serde_json::Value::Null;
        for (i, (name, plan)) in plans.iter().enumerate() {
            let mut v = plan.json(&s.config_path, name);
            for (key, out) in [("runners", &mut runners), ("changes", &mut changes)] {
                if let Some(items) = v[key].as_array_mut() {
                    for item in items.iter_mut() {
                        item["gitlab"] = name.as_str().into();
                    }
                    out.append(items);
                }
            }
            if i == last {
                diff = v["config_diff"].take();
            }
        }
        let doc = serde_json::json!({
            "config": s.config_path.display().to_string(),
            "api_url": s.gitlab_url,
            "gitlabs": plans.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
            "pending": pending,
            "runners": runners,
            "changes": changes,
            "config_diff": diff,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        for (i, (name, mut plan)) in plans.into_iter().enumerate() {
            if i != last {
                plan.config = None;
            }
            print!("{}", plan.text(&s.config_path, &name));
        }
    }
    pending
}
