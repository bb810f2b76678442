// SPDX-License-Identifier: MIT
//! `status`: a read-only report per runner type (id, token valid, expiry,
//! days left), a table or JSON, from what `observe` read.

use super::Outcome;
use crate::clock;
use crate::error::{Error, Kind, Result};
use crate::gitlab::Verified;
use crate::metrics::Facts;
use crate::metrics::Runner;
use crate::reconcile::{
    Engine, Inputs, Observation, gitlabs, metric_tokens, summary, token_expiry, token_warnings,
};
use crate::settings::Settings;
use crate::state::State;
use serde_json::json;

/// `status`: observe (read-only, no lock), then report.
pub fn run(s: &Settings, facts: &mut Facts) -> Result<Outcome> {
    let gitlabs = gitlabs::split(s)?;
    if super::per_gitlab(&gitlabs) {
        return several(s, &gitlabs, facts);
    }
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
    /// Several GitLabs: this runner's.
    gitlab: Option<String>,
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
            gitlab: r.gitlab,
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
                gitlab: None,
                ty: ty.clone(),
                id,
                token,
                valid,
                expires_at,
            }
        })
        .collect()
}

/// An access token as `status` reports it.
struct TokenRow {
    /// Several GitLabs: the GitLab it is for.
    gitlab: Option<String>,
    file: String,
    role: &'static str,
    scopes: String,
    expires_at: Option<i64>,
    valid: bool,
}

/// Print the report. `gitlab` is the state stateless mode found in GitLab.
pub fn status(
    s: &Settings,
    inputs: &Inputs,
    obs: &Observation,
    gitlab: Option<&State>,
) -> Result<Outcome> {
    let rows = rows(inputs, obs, gitlab);
    let tokens = token_rows(obs);
    print(s, &rows, &tokens, obs.now, None);
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

/// Several GitLabs: each GitLab observed in turn (every input checked
/// before any request), one report with each runner's GitLab. An
/// unreachable GitLab is named (exit 69) after the others are reported.
fn several(s: &Settings, gitlabs: &[Settings], facts: &mut Facts) -> Result<Outcome> {
    let t0 = std::time::Instant::now();
    let _lock = Engine::lock(s, true)?;
    let mut engines = Vec::new();
    for g in gitlabs {
        engines.push(Engine::open(g, true, None, t0)?);
    }
    let names: Vec<String> = gitlabs
        .iter()
        .map(|g| g.gitlab_url.clone().unwrap_or_default())
        .collect();
    let mut rows = Vec::new();
    let mut tokens = Vec::new();
    let mut down: Vec<(String, Error)> = Vec::new();
    let mut now = None;
    for ((g, engine), name) in gitlabs.iter().zip(engines).zip(&names) {
        let observed = engine.observe(g, false).and_then(|obs| {
            let start = if g.stateless {
                engine.plan(g, &obs)?.start
            } else {
                None
            };
            Ok((obs, start))
        });
        let (obs, start) = match observed {
            Ok(o) => o,
            Err(e) if matches!(e.kind(), Kind::Unreachable | Kind::Ambiguous) => {
                log::error!("{name}: {e}");
                down.push((name.clone(), e));
                continue;
            }
            Err(e) => return Err(e.context(format!("GitLab {name}"))),
        };
        now.get_or_insert(obs.now);
        let mut t = metric_tokens(&obs);
        t.iter_mut().for_each(|t| t.gitlab = Some(name.clone()));
        facts.tokens.extend(t);
        let mut r = runners(&engine.inputs, &obs, start.as_ref());
        r.iter_mut().for_each(|r| r.gitlab = Some(name.clone()));
        facts.runners.extend(r);
        for mut r in self::rows(&engine.inputs, &obs, start.as_ref()) {
            r.gitlab = Some(name.clone());
            rows.push(r);
        }
        for mut t in token_rows(&obs) {
            t.gitlab = Some(name.clone());
            tokens.push(t);
        }
        for w in token_warnings(&obs.tokens, obs.now, g.warn_before.as_secs() as i64) {
            log::warn!("{name}: {w}");
        }
    }
    let now = now.unwrap_or_else(clock::now);
    print(s, &rows, &tokens, now, Some(&names));
    let invalid = rows.iter().filter(|r| !r.valid).count();
    summary(&format!(
        "status: {} of {} runner credentials valid on {} GitLabs",
        rows.len() - invalid,
        rows.len(),
        names.len()
    ));
    if let Some((_, first)) = down.first() {
        let names: Vec<&str> = down.iter().map(|(n, _)| n.as_str()).collect();
        return Err(Error::new(
            first.kind(),
            format!(
                "GitLab {} unreachable ({first}); the other GitLabs' runners were reported",
                names.join(", ")
            ),
        ));
    }
    Ok(Outcome::Status { invalid })
}

fn token_rows(obs: &Observation) -> Vec<TokenRow> {
    obs.tokens
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
            TokenRow {
                gitlab: None,
                valid,
                file: t.file.display().to_string(),
                role: t.role,
                scopes,
                expires_at: token_expiry(t),
            }
        })
        .collect()
}

/// Print the rows: a table, or JSON. `several`: the GitLabs' urls, when
/// more than one (a `gitlab` per runner and token, a GITLAB column).
fn print(s: &Settings, rows: &[Row], tokens: &[TokenRow], now: i64, several: Option<&[String]>) {
    let days = |t: Option<i64>| t.map(|t| (t - now).div_euclid(86_400));
    if s.json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                let mut v = json!({
                    "type": r.ty,
                    "runner_id": r.id,
                    "token": r.token,
                    "valid": r.valid,
                    "token_expires_at": r.expires_at.map(clock::format),
                    "days_left": days(r.expires_at),
                });
                if let Some(g) = &r.gitlab {
                    v["gitlab"] = g.as_str().into();
                }
                v
            })
            .collect();
        let t: Vec<_> = tokens
            .iter()
            .map(|t| {
                let mut v = json!({
                    "file": t.file,
                    "role": t.role,
                    "scopes": t.scopes.split(',').filter(|s| !s.is_empty() && !s.starts_with('(')).collect::<Vec<_>>(),
                    "valid": t.valid,
                    "expires_at": t.expires_at.map(clock::format),
                    "days_left": days(t.expires_at),
                });
                if let Some(g) = &t.gitlab {
                    v["gitlab"] = g.as_str().into();
                }
                v
            })
            .collect();
        let out = match several {
            None => json!({ "runners": v, "access_tokens": t }),
            Some(names) => json!({ "gitlabs": names, "runners": v, "access_tokens": t }),
        };
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    // several GitLabs: a GITLAB column last
    let last = |days: String, gitlab: &Option<String>| match (several, gitlab) {
        (Some(_), Some(g)) => format!("{days:<9}  {g}"),
        (Some(_), None) => format!("{days:<9}  GITLAB"),
        _ => days,
    };
    println!(
        "{:<12} {:>8}  {:<14} {:<6} {:<21} {}",
        "TYPE",
        "RUNNER",
        "TOKEN",
        "VALID",
        "EXPIRES",
        last("DAYS LEFT".into(), &None)
    );
    for r in rows {
        println!(
            "{:<12} {:>8}  {:<14} {:<6} {:<21} {}",
            r.ty,
            r.id.map_or("-".into(), |i| i.to_string()),
            r.token.as_deref().unwrap_or("(none)"),
            if r.valid { "yes" } else { "NO" },
            r.expires_at.map_or("never".into(), clock::format),
            last(
                days(r.expires_at).map_or("-".into(), |d| d.to_string()),
                &r.gitlab
            )
        );
    }
    if !tokens.is_empty() {
        let w = tokens
            .iter()
            .map(|t| t.file.len())
            .max()
            .unwrap_or(0)
            .max(4);
        let sw = tokens
            .iter()
            .map(|t| t.scopes.len())
            .max()
            .unwrap_or(0)
            .max(6);
        println!(
            "\n{:<12} {:<w$} {:<sw$} {:<21} {}",
            "ACCESS",
            "FILE",
            "SCOPES",
            "EXPIRES",
            last("DAYS LEFT".into(), &None)
        );
        for t in tokens {
            println!(
                "{:<12} {:<w$} {:<sw$} {:<21} {}",
                t.role,
                t.file,
                t.scopes,
                t.expires_at.map_or("never".into(), clock::format),
                last(
                    days(t.expires_at).map_or("-".into(), |d| d.to_string()),
                    &t.gitlab
                )
            );
        }
    }
}
