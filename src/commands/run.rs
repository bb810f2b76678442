// SPDX-License-Identifier: MIT
//! `run` (the default, what `ExecStartPre=` runs): observe, plan and apply;
//! with `--dry-run` it prints the plan instead. `--offline-ok` keeps the
//! existing `config.toml` when GitLab cannot be reached.

use super::Outcome;
use crate::error::{Kind, Result};
use crate::gitlab::Verified;
use crate::metrics::Facts;
use crate::reconcile::{Engine, metric_tokens, summary, token_warnings};
use crate::settings::Settings;

pub fn run(s: &Settings, facts: &mut Facts) -> Result<Outcome> {
    let Some(engine) = Engine::start(s, s.preview)? else {
        return Ok(Outcome::NotConfigured);
    };
    match reconcile(s, engine, facts) {
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
    }
}

/// Observe, plan, then apply (`run`) or print (`plan`, `--dry-run`).
fn reconcile(s: &Settings, engine: Engine, facts: &mut Facts) -> Result<Outcome> {
    let now = engine.now;
    let obs = engine.observe(s, s.prune)?;
    facts.tokens = metric_tokens(&obs);
    for w in token_warnings(&obs.tokens, now, s.warn_before.as_secs() as i64) {
        log::warn!("{w}");
    }
    let plan = engine.plan(s, &obs)?;
    for t in &plan.types {
        let id = t.id.map_or(String::new(), |i| format!(" {i}"));
        log::info!("{} runner{id}: {}", t.ty, t.observed);
    }
    if s.preview {
        return Ok(super::plan::show(s, &plan));
    }
    // what a failed apply leaves for the metrics: the types as observed
    let gitlab = if s.stateless {
        plan.start.as_ref()
    } else {
        None
    };
    facts.runners = super::status::runners(&engine.inputs, &obs, gitlab);
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
    let types = engine.inputs.state.entries.len();
    let applied = engine.apply(s, plan, verified, true)?;
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
