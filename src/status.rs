// SPDX-License-Identifier: MIT
//! `status`: a read-only report per runner type (id, token valid, expiry,
//! days left), a table or JSON, from what `observe` read.

use crate::clock;
use crate::error::Result;
use crate::gitlab::Verified;
use crate::reconcile::{Inputs, Observation, Outcome, summary};
use crate::settings::Settings;
use crate::state::State;
use serde_json::json;

struct Row {
    ty: String,
    id: Option<u64>,
    token: Option<String>,
    valid: bool,
    expires_at: Option<i64>,
}

/// Print the report. `gitlab` is the state stateless mode found in GitLab.
pub fn status(
    s: &Settings,
    inputs: &Inputs,
    obs: &Observation,
    gitlab: Option<&State>,
) -> Result<Outcome> {
    let state = gitlab.unwrap_or(&inputs.state);
    let rows: Vec<Row> = state
        .entries
        .iter()
        .map(|(ty, e)| {
            let (valid, id, expires_at) = match (&e.token, obs.verified.get(ty)) {
                (None, _) => (false, e.id, None),
                (Some(_), Some(Verified::Valid { id, expires_at })) => {
                    (true, id.or(e.id), *expires_at)
                }
                // stateless: the tokens found in GitLab are the valid ones
                (Some(_), None) if gitlab.is_some() => (true, e.id, e.token_expires_at),
                (Some(_), _) => (false, e.id, e.token_expires_at),
            };
            Row {
                ty: ty.clone(),
                id,
                token: e.token.as_ref().map(|t| t.hint()),
                valid,
                expires_at,
            }
        })
        .collect();
    let days = |t: Option<i64>| t.map(|t| (t - obs.now).div_euclid(86_400));
    if s.json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "type": r.ty,
                    "id": r.id,
                    "token": r.token,
                    "valid": r.valid,
                    "token_expires_at": r.expires_at.map(clock::format),
                    "days_left": days(r.expires_at),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
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
    }
    let invalid = rows.iter().filter(|r| !r.valid).count();
    summary(&format!(
        "status: {} of {} runner credentials valid",
        rows.len() - invalid,
        rows.len()
    ));
    Ok(Outcome::Status { invalid })
}
