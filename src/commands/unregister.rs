// SPDX-License-Identifier: MIT
//! `unregister`: delete this host's runners from GitLab and clear the local
//! state (decommissioning a node); with `--dry-run`, print what it would do.

use super::Outcome;
use crate::error::{Error, Kind, Result};
use crate::reconcile::{Applied, Engine, gitlabs, summary};
use crate::settings::Settings;

pub fn run(s: &Settings) -> Result<Outcome> {
    let gitlabs = gitlabs::split(s)?;
    if super::per_gitlab(&gitlabs) {
        return several(s, &gitlabs);
    }
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

/// Several GitLabs: every GitLab observed and planned (each with its own
/// credentials) before anything is deleted, then each unregistered in
/// turn, `--api-url`'s first, under one lock. An unreachable GitLab keeps
/// its runners and state entries; the others are unregistered, and the
/// exit code is 69 naming it.
fn several(s: &Settings, gitlabs: &[Settings]) -> Result<Outcome> {
    let t0 = std::time::Instant::now();
    let _lock = Engine::lock(s, s.preview)?;
    let mut engines = Vec::new();
    for g in gitlabs {
        engines.push(Engine::open(g, s.preview, None, t0)?);
    }
    let mut planned = Vec::new();
    let mut down: Vec<(String, Error)> = Vec::new();
    for (g, engine) in gitlabs.iter().zip(engines) {
        let name = g.gitlab_url.clone().unwrap_or_default();
        let plan = engine
            .observe(g, false)
            .and_then(|obs| engine.unregister(g, &obs));
        match plan {
            Ok(plan) => {
                for t in &plan.types {
                    let id = t.id.map_or(String::new(), |i| format!(" {i}"));
                    log::warn!("{name}: {} runner{id}: {}", t.ty, t.observed);
                }
                planned.push((g, name, engine, plan));
            }
            Err(e) if matches!(e.kind(), Kind::Unreachable | Kind::Ambiguous) => {
                log::error!("{name}: {e}");
                down.push((name, e));
            }
            Err(e) => return Err(e.context(format!("GitLab {name}"))),
        }
    }
    let unreachable = |down: &[(String, Error)], what: &str| {
        let (_, first) = &down[0];
        let names: Vec<&str> = down.iter().map(|(n, _)| n.as_str()).collect();
        Error::new(
            first.kind(),
            format!("GitLab {} unreachable ({first}){what}", names.join(", ")),
        )
    };
    if s.preview {
        let plans = planned.into_iter().map(|(_, n, _, p)| (n, p)).collect();
        let pending = super::plan::show_several(s, plans);
        if !down.is_empty() {
            return Err(unreachable(&down, ""));
        }
        return Ok(super::plan::planned(pending));
    }
    let mut applied = Applied::default();
    for (g, name, mut engine, plan) in planned {
        if engine.inputs.access.is_none() {
            log::warn!(
                "{name}: without an access-token, runners are deleted with their own tokens from {}: this cannot check that they are this host's (a copy from another node would delete that node's runners)",
                s.state_path.display()
            );
        }
        // the state as the GitLabs before this one left it
        engine.inputs.reload_others(g)?;
        let a = engine
            .apply(g, plan, 0, false)
            .map_err(|e| e.context(format!("GitLab {name}")))?;
        let t = &a.tally;
        summary(&format!(
            "{name}: unregister: {} runner(s) deleted{}",
            t.deleted,
            if a.left.is_empty() {
                String::new()
            } else {
                format!(", not found: {}", a.left.join(", "))
            },
        ));
        applied.merge(a);
    }
    summary(&format!(
        "unregister: {} runner(s) deleted on {} GitLab(s){}",
        applied.tally.deleted,
        gitlabs.len() - down.len(),
        if s.stateless {
            String::new()
        } else {
            format!("; {} cleared", s.state_path.display())
        }
    ));
    if !down.is_empty() {
        return Err(unreachable(
            &down,
            "; the other GitLabs' runners were unregistered, its runners and state entries kept",
        ));
    }
    Ok(Outcome::Unregistered(applied))
}
