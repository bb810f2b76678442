// SPDX-License-Identifier: MIT
//! `status` (a read-only report per runner) and `unregister` (delete this
//! host's runners from GitLab and clear the local state). In stateless mode
//! both work on what `reconcile` found in GitLab.

use crate::clock;
use crate::error::{Error, Kind, Result};
use crate::gitlab::{Client, Verified};
use crate::reconcile::{Inputs, summary};
use crate::settings::Settings;
use serde_json::json;

struct Row {
    ty: String,
    id: Option<u64>,
    token: Option<String>,
    valid: bool,
    expires_at: Option<i64>,
}

/// Verify each runner's token and print a table (or JSON). Exit 0 when all
/// are valid, 77 when one is invalid or missing.
pub fn status(s: &Settings, client: &Client, inputs: &Inputs) -> Result<i32> {
    let now = clock::now();
    let mut rows = Vec::new();
    for (ty, e) in &inputs.state.entries {
        let (valid, id, expires_at) = match &e.token {
            None => (false, e.id, None),
            Some(t) => match client.verify(t, inputs.system_id.as_deref())? {
                Verified::Valid { id, expires_at } => (true, id.or(e.id), expires_at),
                Verified::Invalid => (false, e.id, e.token_expires_at),
            },
        };
        rows.push(Row {
            ty: ty.clone(),
            id,
            token: e.token.as_ref().map(|t| t.hint()),
            valid,
            expires_at,
        });
    }
    let days = |t: Option<i64>| t.map(|t| (t - now).div_euclid(86_400));
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
    let bad = rows.iter().filter(|r| !r.valid).count();
    summary(&format!(
        "status: {} of {} runner credentials valid",
        rows.len() - bad,
        rows.len()
    ));
    Ok(if bad == 0 {
        0
    } else {
        Kind::Denied.exit_code()
    })
}

/// Delete every runner of the state from GitLab (by id with the access
/// token, else with the runner's own token), clearing each entry as it goes;
/// then the `others` (stateless: further runners of a type).
pub fn unregister(
    s: &Settings,
    client: &Client,
    mut inputs: Inputs,
    others: &[u64],
) -> Result<i32> {
    let types: Vec<String> = inputs.state.entries.keys().cloned().collect();
    if inputs.access.is_none() {
        log::warn!(
            "without an access-token, runners are deleted with their own tokens from {}: this cannot check that they are this host's (a copy from another node would delete that node's runners)",
            s.state.display()
        );
    }
    let mut deleted = 0;
    let mut left = Vec::new();
    for ty in types {
        let e = &inputs.state.entries[&ty];
        let (mut id, token) = (e.id, e.token.clone());
        // With an access token, a runner is deleted by id, after the
        // ownership check: learn the id of a token the state holds alone.
        if inputs.access.is_some()
            && id.is_none()
            && let Some(t) = &token
            && let Verified::Valid { id: Some(got), .. } =
                client.verify(t, inputs.system_id.as_deref())?
        {
            id = Some(got);
        }
        if id.is_none() && token.is_none() {
            continue;
        }
        let shown = id.map_or("(unknown id)".to_string(), |i| i.to_string());
        if s.dry_run {
            println!("{ty}: would delete runner {shown} and clear its state");
            deleted += 1;
            continue;
        }
        let gone = match (&inputs.access, id, &token) {
            (Some(pat), Some(id), _) => match client.runner(pat, id)? {
                // Only this host's runner is deleted (a copied state entry
                // may name another host's).
                Some(d)
                    if !inputs.host.owns(
                        d.description.as_deref().unwrap_or(""),
                        &d.tag_list,
                        &ty,
                    ) =>
                {
                    log::warn!(
                        "{ty} runner {id} ('{}') is another host's: not deleted",
                        d.description.unwrap_or_default()
                    );
                    false
                }
                Some(_) => client.delete(pat, id)?,
                None => false,
            },
            (_, _, Some(t)) => client.delete_by_token(t)?,
            _ => false,
        };
        if gone {
            deleted += 1;
            log::info!("deleted {ty} runner {shown}");
        } else {
            log::warn!(
                "{ty} runner {shown}: GitLab no longer knows it or its token; it may remain in GitLab"
            );
            left.push(shown);
        }
        let entry = inputs
            .state
            .entries
            .get_mut(&ty)
            .ok_or_else(|| Error::internal("lost a runner type"))?;
        let extra = std::mem::take(&mut entry.extra);
        *entry = crate::state::Entry {
            extra,
            ..Default::default()
        };
        if !s.stateless {
            inputs.state.save(&s.state)?;
        }
    }
    for &id in others {
        if s.dry_run {
            println!("would delete runner {id}: another runner of a type this host has");
            deleted += 1;
        } else if let Some(pat) = &inputs.access
            && client.delete(pat, id)?
        {
            deleted += 1;
            log::info!("deleted runner {id}");
        }
    }
    if s.dry_run {
        summary(&format!("plan: {deleted} runner(s) would be deleted"));
        return Ok(if deleted > 0 { 2 } else { 0 });
    }
    summary(&format!(
        "unregister: {deleted} runner(s) deleted{}{}",
        if left.is_empty() {
            String::new()
        } else {
            format!(", not found: {}", left.join(", "))
        },
        if s.stateless {
            String::new()
        } else {
            format!("; {} cleared", s.state.display())
        }
    ));
    Ok(0)
}
