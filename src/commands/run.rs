// SPDX-License-Identifier: MIT
//! `run` (the default, what `ExecStartPre=` runs): observe, plan and apply;
//! with `--dry-run` it prints the plan instead. `--offline-ok` keeps the
//! existing `config.toml` when GitLab cannot be reached.

use super::Outcome;
use crate::error::{Kind, Result};
use crate::gitlab::Verified;
use crate::metrics::Facts;
use crate::reconcile::{Applied, Engine, gitlabs, metric_tokens, summary, token_warnings};
use crate::settings::Settings;

pub fn run(s: &Settings, facts: &mut Facts) -> Result<Outcome> {
    let gitlabs = gitlabs::split(s)?;
    if super::per_gitlab(&gitlabs) {
        return several(s, &gitlabs, facts);
    }
    let Some(mut engine) = Engine::start(s, s.preview)? else {
        return Ok(Outcome::NotConfigured);
    };
    if let Some(d) = spread(s)? {
        engine.waited(d);
    }
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

/// `--spread`: wait a random time up to `--spread` (the local inputs are
/// checked by then, nothing is written yet: a node reset during it has
/// started nothing), and return how long, for the clients' deadlines to
/// move by; `None` without it or for a plan. SIGTERM ends it at once.
fn spread(s: &Settings) -> Result<Option<std::time::Duration>> {
    if s.preview || s.spread.is_zero() {
        return Ok(None);
    }
    let d = s.spread.mul_f64(crate::gitlab::retry::random());
    log::info!(
        "spreading the cluster's starts (--spread {}s): this host's first request to GitLab in {:.1}s",
        s.spread.as_secs(),
        d.as_secs_f64()
    );
    crate::signals::sleep(d, "the first request to GitLab (--spread)")?;
    Ok(Some(d))
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
        "{}{types} runner{} ok ({}); {} {}",
        super::gitlab_prefix(s),
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

/// Several GitLabs: one engine each, `--api-url`'s first, under one lock;
/// every input is checked before any request. An unreachable GitLab never
/// stops the others: the run goes on and fails at the end naming it (or,
/// with `--offline-ok`, warns).
fn several(s: &Settings, gitlabs: &[Settings], facts: &mut Facts) -> Result<Outcome> {
    let t0 = std::time::Instant::now();
    let _lock = Engine::lock(s, s.preview)?;
    // --offline-ok keeps a config.toml that was there before this run
    let had_config = s.config_path.is_file();
    let mut engines = Vec::new();
    for g in gitlabs {
        let engine = Engine::open(g, s.preview, None, t0)?;
        // every GitLab's --prune token, before any GitLab applies
        engine.check_prune(g)?;
        engines.push(engine);
    }
    if s.preview {
        return preview(s, gitlabs, engines);
    }
    if let Some(d) = spread(s)? {
        engines.iter_mut().for_each(|e| e.waited(d));
    }
    let mut types = 0;
    let mut pending = false;
    let mut applied = Applied::default();
    let mut down: Vec<(String, crate::error::Error)> = Vec::new();
    let mut actions = vec![0usize; 8];
    let mut finished = true;
    for (g, mut engine) in gitlabs.iter().zip(engines) {
        let name = g.gitlab_url.clone().unwrap_or_default();
        engine.inputs.reload_others(g)?;
        let mut f = Facts::default();
        let result = reconcile(g, engine, &mut f);
        // the metrics' gitlab label
        f.tokens
            .iter_mut()
            .for_each(|t| t.gitlab = Some(name.clone()));
        f.runners
            .iter_mut()
            .for_each(|r| r.gitlab = Some(name.clone()));
        facts.tokens.extend(f.tokens);
        facts.runners.extend(f.runners);
        match &f.actions {
            Some(a) => a
                .iter()
                .zip(actions.iter_mut())
                .for_each(|((_, n), t)| *t += n),
            None => finished = false,
        }
        match result {
            Ok(Outcome::Ran {
                types: n,
                applied: a,
            }) => {
                types += n;
                applied.merge(a);
            }
            Ok(Outcome::Planned { pending: p }) => pending |= p,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), Kind::Unreachable | Kind::Ambiguous) => {
                log::error!("{name}: {e}");
                down.push((name, e));
            }
            Err(e) => return Err(e.context(format!("GitLab {name}"))),
        }
    }
    if finished && !s.preview {
        let names = applied.tally.counts().map(|(n, _)| n);
        facts.actions = Some(names.into_iter().zip(actions).collect());
    }
    if !down.is_empty() {
        let names: Vec<&str> = down.iter().map(|(n, _)| n.as_str()).collect();
        let names = names.join(", ");
        if s.offline_ok && had_config && !s.preview {
            log::warn!(
                "GitLab {names} is unreachable; its runners in {} are kept as they were (--offline-ok)",
                s.config_path.display()
            );
            summary(&format!(
                "offline: {names}; kept its runners in {}",
                s.config_path.display()
            ));
            return Ok(Outcome::Ran { types, applied });
        }
        let first = &down[0].1;
        return Err(crate::error::Error::new(
            first.kind(),
            format!(
                "GitLab {names} unreachable ({first}); the other GitLabs' runners were reconciled and its runners in {} kept as they were",
                s.config_path.display()
            ),
        ));
    }
    if s.preview {
        return Ok(Outcome::Planned { pending });
    }
    Ok(Outcome::Ran { types, applied })
}

/// `plan` for several GitLabs: each GitLab's plan, the next one showing
/// the runners of those before as they would be; one document (`--json`:
/// every runner and change with its `gitlab`), the `config.toml` diff of
/// all of them at the end.
fn preview(s: &Settings, gitlabs: &[Settings], engines: Vec<Engine>) -> Result<Outcome> {
    let mut plans = Vec::new();
    let mut carried = std::collections::BTreeMap::new();
    let mut down = Vec::new();
    for (g, mut engine) in gitlabs.iter().zip(engines) {
        let name = g.gitlab_url.clone().unwrap_or_default();
        engine.inputs.shown.extend(carried.clone());
        let planned = engine
            .observe(g, g.prune)
            .and_then(|obs| engine.plan(g, &obs));
        match planned {
            Ok(plan) => {
                for t in &plan.types {
                    let id = t.id.map_or(String::new(), |i| format!(" {i}"));
                    log::info!("{name}: {} runner{id}: {}", t.ty, t.observed);
                }
                carried.extend(plan.after.entries.clone());
                plans.push((name, plan));
            }
            Err(e) if matches!(e.kind(), Kind::Unreachable | Kind::Ambiguous) => {
                log::error!("{name}: {e}");
                down.push((name, e));
            }
            Err(e) => return Err(e.context(format!("GitLab {name}"))),
        }
    }
    let pending = super::plan::show_several(s, plans);
    if let Some((_, first)) = down.first() {
        let names: Vec<&str> = down.iter().map(|(n, _)| n.as_str()).collect();
        return Err(crate::error::Error::new(
            first.kind(),
            format!("GitLab {} unreachable ({first})", names.join(", ")),
        ));
    }
    Ok(super::plan::planned(pending))
}
