// SPDX-License-Identifier: MIT
//! `status`: a read-only report per runner type (id, token valid, expiry,
//! days left), a table or JSON, from what `observe` read.

use super::Outcome;
use crate::clock;
use crate::error::Result;
use crate::gitlab::Verified;
use crate::metrics::Facts;
use crate::metrics::Runner;
use crate::reconcile::{
    Engine, Inputs, Observation, metric_tokens, summary, token_expiry, token_warnings,
};
use crate::settings::Settings;
use crate::state::State;
use serde_json::json;

/// `status`: observe (read-only, no lock), then report.
pub fn run(s: &Settings, facts: &mut Facts) -> Result<Outcome> {
    let Some(engine) = Engine::start(s, true)? else {
        return Ok(Outcome::NotConfigured);
    };
    let obs = engine.observe(s, false)?;
    facts.tokens = metric_tokens(&obs);
    let start = if s.stateless {
        engine.plan(s, &obs)?.start
    } else {
        None
    };
    facts.runners = runners(&engine.inputs, &obs, start.as_ref());
    status(s, &engine.inputs, &obs, start.as_ref())
}

struct Row {
    ty: String,
    id: Option<u64>,
    token: Option<String>,
    valid: bool,
    expires_at: Option<i64>,
}

/// Each runner type as `status` reports it (the metrics of `status`, and
/// of a run that failed after it observed). `gitlab` is the state
/// stateless mode found in GitLab.
pub fn runners(inputs: &Inputs, obs: &Observation, gitlab: Option<&State>) -> Vec<Runner> {
    rows(inputs, obs, gitlab)
        .into_iter()
        .map(|r| Runner {
            ty: r.ty,
            id: r.id,
            valid: r.valid,
            expires_at: r.expires_at,
        })
        .collect()
}

fn rows(inputs: &Inputs, obs: &Observation, gitlab: Option<&State>) -> Vec<Row> {
    let state = gitlab.unwrap_or(&inputs.state);
    state
        .entries
        .iter()
        .map(|(ty, e)| {
            // a token gitlab-runner rotated itself: in config.toml, valid,
            // and this runner's (the next run adopts it)
            let rotated = obs.unknown.iter().find_map(|(c, v)| match v {
                Verified::Valid {
                    id: Some(i),
                    expires_at,
                } if e.id == Some(*i) => Some((c.token.hint(), *expires_at)),
                _ => None,
            });
            let hint = e.token.as_ref().map(|t| t.hint());
            let (valid, id, expires_at, token) = match (&e.token, obs.verified.get(ty), rotated) {
                (None, _, _) => (false, e.id, None, hint),
                (Some(_), Some(Verified::Valid { id, expires_at }), _) => {
                    (true, id.or(e.id), *expires_at, hint)
                }
                // stateless: the tokens found in GitLab are the valid ones
                (Some(_), None, _) if gitlab.is_some() => (true, e.id, e.token_expires_at, hint),
                (Some(_), _, Some((config, expires_at))) => (true, e.id, expires_at, Some(config)),
                (Some(_), _, None) => (false, e.id, e.token_expires_at, hint),
            };
            Row {
                ty: ty.clone(),
                id,
                token,
                valid,
                expires_at,
            }
        })
        .collect()
}

/// Print the report. `gitlab` is the state stateless mode found in GitLab.
pub fn status(
    s: &Settings,
    inputs: &Inputs,
    obs: &Observation,
    gitlab: Option<&State>,
) -> Result<Outcome> {
    let rows = rows(inputs, obs, gitlab);
    let days = |t: Option<i64>| t.map(|t| (t - obs.now).div_euclid(86_400));
    let tokens: Vec<(String, &'static str, String, Option<i64>, bool)> = obs
        .tokens
        .iter()
        .map(|t| {
            let (scopes, valid) = match &t.info {
                Ok(Some(i)) => (
                    crate::untrusted::shown(&i.scopes.join(",")),
                    i.active != Some(false),
                ),
                Ok(None) => ("(unknown: GitLab < 15.5)".to_string(), true),
                Err(_) => ("(invalid)".to_string(), false),
            };
            (
                t.file.display().to_string(),
                t.role,
                scopes,
                token_expiry(t),
                valid,
            )
        })
        .collect();
    if s.json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "type": r.ty,
                    "runner_id": r.id,
                    "token": r.token,
                    "valid": r.valid,
                    "token_expires_at": r.expires_at.map(clock::format),
                    "days_left": days(r.expires_at),
                })
            })
            .collect();
        let t: Vec<_> = tokens
            .iter()
            .map(|(file, role, scopes, exp, valid)| {
                json!({
                    "file": file,
                    "role": role,
                    "scopes": scopes.split(',').filter(|s| !s.is_empty() && !s.starts_with('(')).collect::<Vec<_>>(),
                    "valid": valid,
                    "expires_at": exp.map(clock::format),
                    "days_left": days(*exp),
                })
            })
            .collect();
        let out = json!({ "runners": v, "access_tokens": t });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        println!(
            "{:<12} {:>8}  {:<14} {:<6} {:<21} DAYS LEFT",
            "TYPE", "RUNNER", "TOKEN", "VALID", "EXPIRES"
        );
        for r in &rows {
            println!(
                "{:<12} {:>8}  {:<14} {:<6} {:<21} {}",
                r.ty,
                r.id.map_or("-".into(), |i| i.to_string()),
                r.token.as_deref().unwrap_or("(none)"),
                if r.valid { "yes" } else { "NO" },
                r.expires_at.map_or("never".into(), clock::format),
                days(r.expires_at).map_or("-".into(), |d| d.to_string())
            );
        }
        if !tokens.is_empty() {
            let w = tokens.iter().map(|t| t.0.len()).max().unwrap_or(0).max(4);
            let sw = tokens.iter().map(|t| t.2.len()).max().unwrap_or(0).max(6);
            println!(
                "\n{:<12} {:<w$} {:<sw$} {:<21} DAYS LEFT",
                "ACCESS", "FILE", "SCOPES", "EXPIRES"
            );
            for (file, role, scopes, exp, _) in &tokens {
                println!(
                    "{:<12} {:<w$} {:<sw$} {:<21} {}",
                    role,
                    file,
                    scopes,
                    exp.map_or("never".into(), clock::format),
                    days(*exp).map_or("-".into(), |d| d.to_string())
                );
            }
        }
    }
    for w in token_warnings(&obs.tokens, obs.now, s.warn_before.as_secs() as i64) {
        log::warn!("{w}");
    }
    let invalid = rows.iter().filter(|r| !r.valid).count();
    summary(&format!(
        "status: {} of {} runner credentials valid",
        rows.len() - invalid,
        rows.len()
    ));
    Ok(Outcome::Status { invalid })
}
