// SPDX-License-Identifier: MIT
//! Observing: verifying the tokens this host holds (state, `config.toml`)
//! and, in stateless mode, finding this host's runners in GitLab; requests
//! whose answers are independent run in parallel.

use super::{Engine, Observed};
use crate::clock;
use crate::error::{Error, Result};
use crate::gitlab::Verified;
use crate::gitlab::api::RunnerDetails;
use crate::secret::Secret;
use crate::state::ConfigRunner;
use std::collections::BTreeMap;

impl Engine<'_> {
    /// Stateless: find this host's runners in GitLab (listed by the hostname
    /// tag, mapped to a type by the ownership rule), take the token `config.toml` holds when it verifies for the
    /// runner, delete extra runners of a type (keeping the one whose token is
    /// held, else the newest), and fill the in-memory state from that.
    pub(super) fn observe_gitlab(&mut self, existing: &[ConfigRunner]) -> Result<Vec<Observed>> {
        let pat = self
            .inputs
            .access
            .clone()
            .ok_or_else(|| Error::internal("stateless without access token"))?;
        let hostname = self.inputs.host.hostname.clone();
        let listed =
            self.client
                .list_tagged(&pat, self.s.scope, std::slice::from_ref(&hostname))?;
        let details: Vec<RunnerDetails> = parallel(&listed, |r| self.client.runner(&pat, r.id))
            .into_iter()
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        log::info!(
            "found {} runner{} tagged {hostname} in GitLab",
            details.len(),
            if details.len() == 1 { "" } else { "s" }
        );
        // Tokens this host holds: config.toml's, and any the API still shows (GitLab < 13.0).
        let mut held: Vec<(Secret, Option<i64>)> = existing
            .iter()
            .map(|r| (r.token.clone(), r.token_obtained_at))
            .collect();
        for t in details.iter().filter_map(|d| d.token.as_deref()) {
            if !held.iter().any(|(h, _)| h.expose() == t) {
                held.push((Secret::new(t), None));
            }
        }
        let valid: Vec<(u64, Secret, Option<i64>, Option<i64>)> = held
            .iter()
            .zip(self.verify_all(&held, |(t, _)| t)?)
            .filter_map(|((token, obtained), v)| match v {
                Verified::Valid {
                    id: Some(id),
                    expires_at,
                } => Some((id, token.clone(), expires_at, *obtained)),
                _ => None,
            })
            .collect();
        let types: Vec<String> = self.inputs.state.entries.keys().cloned().collect();
        let host = &self.inputs.host;
        let type_of = |d: &RunnerDetails| {
            host.owned_type(d.description.as_deref().unwrap_or(""), &d.tag_list)
        };
        let mut out = Vec::new();
        let mut extra = Vec::new();
        let mut chosen = Vec::new();
        for ty in &types {
            let mut mine: Vec<&RunnerDetails> = details
                .iter()
                .filter(|d| type_of(d).as_ref() == Some(ty))
                .collect();
            mine.sort_by_key(|d| d.id);
            let keep = mine
                .iter()
                .find(|d| valid.iter().any(|v| v.0 == d.id))
                .or(mine.last())
                .map(|d| d.id);
            extra.extend(
                mine.iter()
                    .filter(|d| Some(d.id) != keep)
                    .map(|d| (*d).clone()),
            );
            chosen.push((ty.clone(), keep));
        }
        for (ty, keep) in chosen {
            let Some(id) = keep else {
                out.push(Observed::Missing);
                continue;
            };
            let now = self.now;
            let e = self.entry(&ty);
            e.id = Some(id);
            match valid.iter().find(|v| v.0 == id) {
                Some((_, token, expires_at, obtained_at)) => {
                    e.token = Some(token.clone());
                    e.token_expires_at = *expires_at;
                    e.token_obtained_at = obtained_at.or(Some(now));
                    let obs = Observed::Valid {
                        token: token.clone(),
                        id: Some(id),
                        adopted: false,
                        expires_at: *expires_at,
                        obtained_at: e.token_obtained_at,
                    };
                    self.tally.verified += 1;
                    log::info!("verified {ty} runner {id}: this host holds its token");
                    out.push(obs);
                }
                None => {
                    log::info!("{ty} runner {id}: this host holds no valid token for it");
                    out.push(Observed::Invalid);
                }
            }
        }
        for d in details {
            self.details.insert(d.id, Ok(Some(d)));
        }
        self.delete_runners(
            &pat,
            &extra,
            "--stateless",
            "extra runners of a type this host already has",
        )?;
        Ok(out)
    }

    /// Verify every token, those in `config.toml` that the state does not
    /// hold (gitlab-runner may have rotated them) and the state's, and with
    /// an access token read each state runner's details (ownership, drift):
    /// all in one parallel round.
    pub(super) fn observe(&mut self, existing: &[ConfigRunner]) -> Result<Vec<Observed>> {
        let entries = &self.inputs.state.entries;
        let known: Vec<&Secret> = entries.values().filter_map(|e| e.token.as_ref()).collect();
        // Tokens written literally in the template are the admin's own.
        let unknown: Vec<&ConfigRunner> = existing
            .iter()
            .filter(|r| {
                !known.contains(&&r.token) && !self.inputs.template.has_literal(r.token.expose())
            })
            .collect();
        let to_verify: Vec<(&String, &Secret)> = entries
            .iter()
            .filter_map(|(ty, e)| Some((ty, e.token.as_ref()?)))
            .collect();
        let ids: Vec<u64> = match &self.inputs.access {
            Some(_) => entries.values().filter_map(|e| e.id).collect(),
            None => Vec::new(),
        };
        let mut jobs: Vec<Job> = unknown.iter().map(|r| Job::Verify(&r.token)).collect();
        jobs.extend(to_verify.iter().map(|(_, t)| Job::Verify(t)));
        jobs.extend(ids.iter().map(|id| Job::Details(*id)));
        let mut answers = self.fetch(&jobs).into_iter();
        let unknown_answers: Vec<Result<Verified>> = answers
            .by_ref()
            .take(unknown.len())
            .map(Answer::verified)
            .collect();
        let mut verified: BTreeMap<String, Result<Verified>> = to_verify
            .iter()
            .map(|(ty, _)| {
                (
                    (*ty).clone(),
                    answers.next().map_or_else(missing, Answer::verified),
                )
            })
            .collect();
        for (id, a) in ids.iter().zip(answers) {
            self.details.insert(*id, a.details());
        }

        let mut adoptable: Vec<(u64, &ConfigRunner, Option<i64>)> = Vec::new();
        for (r, v) in unknown.iter().zip(unknown_answers) {
            match v? {
                Verified::Valid {
                    id: Some(id),
                    expires_at,
                } if entries.values().any(|e| e.id == Some(id)) => {
                    adoptable.push((id, r, expires_at));
                }
                Verified::Valid { id, .. } => log::warn!(
                    "{} holds a valid token of runner {} that runner-data.json does not know; it will be dropped from config.toml",
                    self.s.config.display(),
                    id.map_or("(unknown id)".to_string(), |i| i.to_string())
                ),
                Verified::Invalid => log::debug!(
                    "{} holds a stale token ({})",
                    self.s.config.display(),
                    r.token
                ),
            }
        }
        let mut out = Vec::new();
        for (ty, entry) in entries {
            if let Some(foreign) = entry.id.and_then(|id| self.foreign(ty, id)) {
                out.push(foreign);
                continue;
            }
            if let Some((_, r, expires_at)) =
                adoptable.iter().find(|(id, _, _)| Some(*id) == entry.id)
            {
                out.push(Observed::Valid {
                    token: r.token.clone(),
                    id: entry.id,
                    adopted: true,
                    expires_at: *expires_at,
                    obtained_at: r.token_obtained_at.or(Some(self.now)),
                });
                continue;
            }
            let (Some(token), Some(v)) = (&entry.token, verified.remove(ty)) else {
                out.push(Observed::Missing);
                continue;
            };
            let obs = match v? {
                Verified::Valid { expires_at, id } => {
                    self.tally.verified += 1;
                    if let (Some(got), Some(want)) = (id, entry.id)
                        && got != want
                    {
                        log::warn!(
                            "{ty}: GitLab says the token belongs to runner {got}, runner-data.json says {want}; recording {got}"
                        );
                        if let Some(pat) = &self.inputs.access
                            && !self.details.contains_key(&got)
                        {
                            let d = self.client.runner(pat, got);
                            self.details.insert(got, d);
                        }
                        if let Some(foreign) = self.foreign(ty, got) {
                            out.push(foreign);
                            continue;
                        }
                    }
                    log::info!(
                        "verified {ty} runner {}: valid{}",
                        id.or(entry.id).map_or("?".into(), |i| i.to_string()),
                        expires_at.map_or(", never expires".into(), |e| format!(
                            " until {}",
                            clock::format(e)
                        ))
                    );
                    Observed::Valid {
                        token: token.clone(),
                        id,
                        adopted: false,
                        expires_at,
                        obtained_at: entry.token_obtained_at.or(Some(self.now)),
                    }
                }
                Verified::Invalid => {
                    log::info!(
                        "verified {ty} runner: token rejected by GitLab (unknown, deleted or expired)"
                    );
                    // Healing resets a token by id: only for a runner known
                    // to be this host's.
                    if let Some(id) = entry.id
                        && matches!(self.details.get(&id), Some(Err(_)))
                        && let Some(Err(e)) = self.details.remove(&id)
                    {
                        return Err(e.context(format!(
                            "cannot heal the {ty} runner {id} without knowing it is this host's"
                        )));
                    }
                    Observed::Invalid
                }
            };
            out.push(obs);
        }
        Ok(out)
    }

    /// `Some(Observed::Foreign)` when GitLab shows runner `id` of the state
    /// entry `ty` as another host's (copied state, a node image), with the
    /// warning said.
    fn foreign(&self, ty: &str, id: u64) -> Option<Observed> {
        let Some(Ok(Some(d))) = self.details.get(&id) else {
            return None;
        };
        let description = d.description.clone().unwrap_or_default();
        if self.inputs.host.owns(&description, &d.tag_list, ty) {
            return None;
        }
        log::warn!(
            "{} holds runner {id} ('{description}', tags {}), which GitLab shows as another host's (copied from another node?); leaving it alone and creating {}'s own {ty} runner",
            self.s.state.display(),
            d.tag_list.join(","),
            self.inputs.host.hostname
        );
        Some(Observed::Foreign { id, description })
    }

    /// Run `jobs` several at a time; answers in order.
    fn fetch(&self, jobs: &[Job]) -> Vec<Answer> {
        let sid = self.inputs.system_id.as_deref();
        parallel(jobs, |job| match job {
            Job::Verify(token) => Answer::Verified(self.client.verify(token, sid)),
            Job::Details(id) => match &self.inputs.access {
                Some(pat) => Answer::Details(self.client.runner(pat, *id)),
                None => Answer::Details(Err(Error::internal("details without access token"))),
            },
        })
    }

    /// Verify the token of every item, several at a time; answers in order.
    pub(super) fn verify_all<T: Sync>(
        &self,
        items: &[T],
        token: impl Fn(&T) -> &Secret + Sync,
    ) -> Result<Vec<Verified>> {
        let sid = self.inputs.system_id.as_deref();
        parallel(items, |item| self.client.verify(token(item), sid))
            .into_iter()
            .collect()
    }
}

/// One independent read of an observation.
enum Job<'a> {
    Verify(&'a Secret),
    Details(u64),
}

enum Answer {
    Verified(Result<Verified>),
    Details(Result<Option<RunnerDetails>>),
}

impl Answer {
    fn verified(self) -> Result<Verified> {
        match self {
            Answer::Verified(v) => v,
            Answer::Details(_) => Err(Error::internal("answers out of order")),
        }
    }
    fn details(self) -> Result<Option<RunnerDetails>> {
        match self {
            Answer::Details(d) => d,
            Answer::Verified(_) => Err(Error::internal("answers out of order")),
        }
    }
}

fn missing<T>() -> Result<T> {
    Err(Error::internal("an answer is missing"))
}

/// How many requests run at once when the answers are independent.
const PARALLEL: usize = 8;

/// Run `f` on every item, up to `PARALLEL` at a time; results in order.
pub(super) fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(PARALLEL) {
        if let [one] = chunk {
            out.push(f(one));
            continue;
        }
        std::thread::scope(|s| {
            let workers: Vec<_> = chunk.iter().map(|item| s.spawn(|| f(item))).collect();
            for w in workers {
                out.push(w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            }
        });
    }
    out
}
