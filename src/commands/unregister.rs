// SPDX-License-Identifier: MIT
//! `unregister`: delete this host's runners from GitLab and clear the local
//! state (decommissioning a node); with `--dry-run`, print what it would do.

use super::Outcome;
use crate::error::Result;
use crate::reconcile::{Engine, summary};
use crate::settings::Settings;

pub fn run(s: &Settings) -> Result<Outcome> {
    let Some(engine) = Engine::start(s, s.preview)? else {
        return Ok(Outcome::NotConfigured);
    };
    let obs = engine.observe(s, false)?;
    let plan = engine.unregister(s, &obs)?;
    for t in &plan.types {
        let id = t.id.map_or(String::new(), |i| format!(" {i}"));
        log::warn!("{} runner{id}: {}", t.ty, t.observed);
    }
    if s.preview {
        return Ok(super::plan::show(s, &plan));
    }
    if engine.inputs.access.is_none() {
        log::warn!(
            "without an access-token, runners are deleted with their own tokens from {}: this cannot check that they are this host's (a copy from another node would delete that node's runners)",
            s.state_path.display()
        );
    }
    let applied = engine.apply(s, plan, 0, false)?;
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
