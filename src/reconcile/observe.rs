// SPDX-License-Identifier: MIT
//! Observing: every read of a run and nothing else (no write to GitLab or
//! disk). The tokens this host holds (state, `config.toml`, temporary files
//! a killed run left) are verified, and with an access token each known
//! runner's details are read, all in one parallel round; stateless mode and
//! `--prune` first list this host's runners by the hostname tag.

use super::Inputs;
use crate::error::{Error, Kind, Result};
use crate::gitlab::api::{RunnerDetails, TokenSelf};
use crate::gitlab::{Client, Verified};
use crate::secret::Secret;
use crate::settings::Settings;
use crate::state::{ConfigRunner, State, parse_config_runners};
use crate::trust::{self, Class};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What `GET /runners/:id` said.
#[derive(Debug, Clone)]
pub enum Details {
    Found(RunnerDetails),
    /// 404: no such runner.
    Gone,
    /// The request failed: whose runner it is stays unknown.
    Unreadable {
        kind: Kind,
        message: String,
    },
}

/// A token found in a temporary file a killed run left.
#[derive(Debug, Clone)]
pub struct Leftover {
    /// The runner type it was stored for (state files name it).
    pub ty: Option<String>,
    pub token: Secret,
    pub file: PathBuf,
    pub verified: Verified,
}

/// An access token this host holds, and what GitLab says of it.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub file: PathBuf,
    /// `admin-token` (creates runners) or `access-token` (manages them).
    pub role: &'static str,
    /// `Ok(None)`: GitLab cannot say (before 15.5); `Err`: the request
    /// failed, with the message.
    pub info: std::result::Result<Option<TokenSelf>, String>,
}

/// Everything a run read, as values.
#[derive(Debug, Default)]
pub struct Observation {
    pub now: i64,
    /// The existing `config.toml`, as bytes (`None`: it does not exist).
    pub old_config: Option<Vec<u8>>,
    /// The runners (tokens) of that `config.toml`; none when it does not
    /// parse (it is then replaced).
    pub existing: Vec<ConfigRunner>,
    /// Temporary files a killed run left, and the tokens in them.
    pub leftover_files: Vec<PathBuf>,
    pub leftovers: Vec<Leftover>,
    /// Stateful: each state token's verify answer, by runner type.
    pub verified: BTreeMap<String, Verified>,
    /// Stateful: tokens in `config.toml` the state does not hold (nor the
    /// template literally), with their verify answers.
    pub unknown: Vec<(ConfigRunner, Verified)>,
    /// Stateless: every token this host holds, with its verify answer.
    pub held: Vec<(ConfigRunner, Verified)>,
    /// `GET /runners/:id` answers (with an access token), by runner id.
    pub details: BTreeMap<u64, Details>,
    /// Runner ids listed by the hostname tag (stateless, `--prune`).
    pub listed: Vec<u64>,
    /// The access tokens held (`admin-token` when it is one, `access-token`).
    pub tokens: Vec<AccessToken>,
}

impl Observation {
    /// The details of runner `id`, when GitLab showed it.
    pub fn runner(&self, id: u64) -> Option<&RunnerDetails> {
        match self.details.get(&id) {
            Some(Details::Found(d)) => Some(d),
            _ => None,
        }
    }
}

/// One independent read.
enum Job<'a> {
    Verify(&'a Secret),
    Details(u64),
    TokenSelf(&'a Secret),
}

enum Answer {
    Verified(Result<Verified>),
    Details(Result<Option<RunnerDetails>>),
    TokenSelf(Result<Option<TokenSelf>>),
}

/// The access tokens to ask GitLab about: `admin-token` when it creates
/// runners with `POST /user/runners`, and `access-token`.
fn access_tokens(s: &Settings, inputs: &Inputs) -> Vec<(PathBuf, &'static str, Secret)> {
    let mut out = Vec::new();
    if let Some((t, path)) = &inputs.admin
        && s.registration
            .user_runners(crate::secret::is_access_token(t.expose()))
    {
        out.push((path.clone(), "admin-token", t.clone()));
    }
    if let (Some(t), Some(path)) = (&inputs.access, &inputs.access_path) {
        out.push((path.clone(), "access-token", t.clone()));
    }
    out
}

/// Read everything the run needs. `prune` lists this host's runners.
pub fn observe(
    s: &Settings,
    inputs: &Inputs,
    client: &Client,
    now: i64,
    prune: bool,
) -> Result<Observation> {
    let mut obs = Observation {
        now,
        ..Observation::default()
    };
    read_config(s, &mut obs)?;
    read_leftovers(s, &mut obs);
    let pat = inputs.access.as_ref();
    // a create whose answer was lost and that was made again: look for a
    // late one (see plan's sweep)
    let sweep = pat.is_some()
        && inputs
            .state
            .entries
            .values()
            .any(|e| e.create_pending_since.is_some() && e.token.is_some());
    if s.stateless || prune || sweep {
        let pat = pat.ok_or_else(|| prune_needs_access(s))?;
        let host = &inputs.host;
        obs.listed =
            client.list_tagged(pat, s.scope, std::slice::from_ref(&host.hostname), |d| {
                host.could_own(d)
            })?;
        check_candidates(&obs.listed)?;
    }
    let sid = inputs.system_id.as_deref();
    let entries = &inputs.state.entries;
    // The tokens to verify: leftovers' first, then (stateful) the tokens
    // of config.toml the state does not hold and the state's, or
    // (stateless) every token config.toml holds.
    let unknown: Vec<ConfigRunner> = if s.stateless {
        Vec::new()
    } else {
        let known: Vec<&Secret> = entries.values().filter_map(|e| e.token.as_ref()).collect();
        obs.existing
            .iter()
            .filter(|r| {
                !known.contains(&&r.token) && !inputs.template.has_literal(r.token.expose())
            })
            .cloned()
            .collect()
    };
    // stateless: the tokens a stopped run left count as held
    let held: Vec<ConfigRunner> = if s.stateless {
        let left = std::mem::take(&mut obs.leftovers);
        obs.existing
            .iter()
            .cloned()
            .chain(left.into_iter().map(|l| ConfigRunner {
                token: l.token,
                id: None,
                token_obtained_at: None,
                token_expires_at: None,
                url: None,
            }))
            .collect()
    } else {
        Vec::new()
    };
    let mut tokens: Vec<Secret> = obs.leftovers.iter().map(|l| l.token.clone()).collect();
    tokens.extend(unknown.iter().chain(&held).map(|r| r.token.clone()));
    let state_tokens: Vec<(String, Secret)> = if s.stateless {
        Vec::new()
    } else {
        entries
            .iter()
            .filter_map(|(ty, e)| Some((ty.clone(), e.token.clone()?)))
            .collect()
    };
    tokens.extend(state_tokens.iter().map(|(_, t)| t.clone()));
    let mut ids: Vec<u64> = obs.listed.clone();
    if pat.is_some() && !s.stateless {
        ids.extend(entries.values().filter_map(|e| e.id));
    }
    ids.sort();
    ids.dedup();
    let held_tokens = access_tokens(s, inputs);
    let mut asked: Vec<&Secret> = Vec::new();
    for (_, _, t) in &held_tokens {
        if !asked.contains(&t) {
            asked.push(t);
        }
    }
    let mut jobs: Vec<Job> = tokens.iter().map(Job::Verify).collect();
    jobs.extend(ids.iter().map(|id| Job::Details(*id)));
    jobs.extend(asked.iter().map(|t| Job::TokenSelf(t)));
    let mut answers = fetch(client, pat, sid, &jobs)?.into_iter();
    for l in obs.leftovers.iter_mut() {
        l.verified = next_verified(&mut answers)?;
    }
    for r in unknown {
        let v = next_verified(&mut answers)?;
        obs.unknown.push((r, v));
    }
    for r in held {
        let v = next_verified(&mut answers)?;
        obs.held.push((r, v));
    }
    for (ty, _) in state_tokens {
        let v = next_verified(&mut answers)?;
        obs.verified.insert(ty, v);
    }
    for id in ids {
        let d = match answers.next() {
            Some(Answer::Details(d)) => d,
            _ => Err(Error::internal("answers out of order")),
        };
        obs.details.insert(id, details(d)?);
    }
    let infos: Vec<std::result::Result<Option<TokenSelf>, String>> = asked
        .iter()
        .map(|_| match answers.next() {
            Some(Answer::TokenSelf(r)) => r.map_err(|e| e.to_string()),
            _ => Err("answers out of order".to_string()),
        })
        .collect();
    for (file, role, t) in &held_tokens {
        let i = asked.iter().position(|a| *a == t).unwrap_or(0);
        obs.tokens.push(AccessToken {
            file: file.clone(),
            role,
            info: infos.get(i).cloned().unwrap_or(Ok(None)),
        });
    }
    follow_up(s, inputs, client, &mut obs)?;
    Ok(obs)
}

/// The reads that depend on the first round: runners named only by a verify
/// answer (a token that belongs to another id than the state says, a
/// leftover's), and (GitLab before 13.0) tokens shown in runner details.
fn follow_up(s: &Settings, inputs: &Inputs, client: &Client, obs: &mut Observation) -> Result<()> {
    let sid = inputs.system_id.as_deref();
    if s.stateless {
        let shown: Vec<Secret> = obs
            .details
            .values()
            .filter_map(|d| match d {
                Details::Found(d) => {
                    let t = d.token.as_deref()?;
                    match crate::untrusted::token_problem(t) {
                        None => Some(Secret::new(t)),
                        Some(p) => {
                            log::warn!(
                                "GET /runners/{}: its token is not a GitLab runner token ({p}): not used",
                                d.id
                            );
                            None
                        }
                    }
                }
                _ => None,
            })
            .filter(|t| !obs.held.iter().any(|(r, _)| &r.token == t))
            .collect();
        let answers = parallel(&shown, |t| client.verify(t, sid))?;
        for (t, v) in shown.into_iter().zip(answers) {
            let r = ConfigRunner {
                token: t,
                id: None,
                token_obtained_at: None,
                token_expires_at: None,
                url: None,
            };
            obs.held.push((r, v?));
        }
        return Ok(());
    }
    let Some(pat) = &inputs.access else {
        return Ok(());
    };
    let named = obs
        .verified
        .values()
        .chain(obs.leftovers.iter().map(|l| &l.verified))
        .filter_map(|v| match v {
            Verified::Valid { id: Some(id), .. } => Some(*id),
            _ => None,
        });
    let mut ids: Vec<u64> = named.filter(|id| !obs.details.contains_key(id)).collect();
    ids.sort();
    ids.dedup();
    for (id, d) in ids
        .iter()
        .zip(parallel(&ids, |id| client.runner(pat, *id))?)
    {
        obs.details.insert(*id, details(d)?);
    }
    Ok(())
}

fn next_verified(answers: &mut impl Iterator<Item = Answer>) -> Result<Verified> {
    match answers.next() {
        Some(Answer::Verified(v)) => v,
        _ => Err(Error::internal("answers out of order")),
    }
}

/// A details answer as the plan sees it; a stop (SIGTERM, SIGINT) is no
/// unreadable runner but the end of the run.
fn details(d: Result<Option<RunnerDetails>>) -> Result<Details> {
    Ok(match d {
        Ok(Some(d)) => Details::Found(d),
        Ok(None) => Details::Gone,
        Err(e) if matches!(e.kind(), Kind::Terminated | Kind::Interrupted) => return Err(e),
        Err(e) => Details::Unreadable {
            kind: e.kind(),
            message: e.to_string(),
        },
    })
}

/// The most runners listed by the hostname tag whose details a run reads:
/// no host has that many of its own, so a listing with more is a GitLab
/// that is broken or hostile.
pub const MAX_CANDIDATES: usize = 500;

/// Refuse a listing with more than [`MAX_CANDIDATES`] runners that could
/// be this host's.
pub fn check_candidates(ids: &[u64]) -> Result<()> {
    if ids.len() > MAX_CANDIDATES {
        return Err(Error::data(format!(
            "GitLab lists {} runners that could be this host's by their description (more than {MAX_CANDIDATES}): not reading them; delete the pile-up in GitLab",
            ids.len()
        )));
    }
    Ok(())
}

/// The existing `config.toml` and its runners.
fn read_config(s: &Settings, obs: &mut Observation) -> Result<()> {
    let Some(bytes) = trust::read(&s.config_path, Class::Input)? else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    match parse_config_runners(&s.config_path, &text) {
        Ok(r) => obs.existing = mine(s, r),
        Err(e) => log::warn!("{e}; it will be replaced"),
    }
    obs.old_config = Some(bytes);
    Ok(())
}

/// Several GitLabs: the runners of `config.toml` whose `url` is this
/// GitLab (another GitLab's token is never sent here).
fn mine(s: &Settings, runners: Vec<ConfigRunner>) -> Vec<ConfigRunner> {
    match &s.gitlab {
        Some(g) => runners
            .into_iter()
            .filter(|r| super::gitlabs::belongs(g, r.url.as_deref()))
            .collect(),
        None => runners,
    }
}

/// Temporary files of `write_atomic` a killed run left
/// (`.runner-data.json.tmp-PID`, `.config.toml.tmp-PID`), and the tokens in
/// them this host does not otherwise hold.
fn read_leftovers(s: &Settings, obs: &mut Observation) {
    let mut files = crate::fsutil::leftover_temps(&s.config_path);
    if !s.stateless {
        files.extend(crate::fsutil::leftover_temps(&s.state_path));
    }
    files.sort();
    files.dedup();
    for file in files {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with(".gitlab-runner-auth.probe-") {
            obs.leftover_files.push(file);
            continue;
        }
        let text = match trust::read_text(&file, Class::Input) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                // not ours to read, nor to remove
                log::warn!("leaving {}: {e}", file.display());
                continue;
            }
        };
        let is_state = file
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".runner-data.json.tmp-"));
        let tokens: Vec<(Option<String>, Secret)> = if is_state {
            State::parse(text.as_bytes())
                .map(|st| {
                    st.entries
                        .into_iter()
                        // an entry made on another GitLab is that one's
                        .filter(|(_, e)| {
                            s.gitlab
                                .as_ref()
                                .is_none_or(|g| super::inputs::entry_is_of(g, e, &g.url))
                        })
                        .filter_map(|(ty, e)| Some((Some(ty), e.token?)))
                        .collect()
                })
                .unwrap_or_default()
        } else {
            parse_config_runners(&file, &text)
                .map(|rs| mine(s, rs).into_iter().map(|r| (None, r.token)).collect())
                .unwrap_or_default()
        };
        for (ty, token) in tokens {
            if let (Some(g), Some(ty)) = (&s.gitlab, &ty)
                && !g.types.contains(ty)
            {
                continue;
            }
            if !obs.leftovers.iter().any(|l| l.token == token) {
                obs.leftovers.push(Leftover {
                    ty,
                    token,
                    file: file.clone(),
                    verified: Verified::Invalid,
                });
            }
        }
        obs.leftover_files.push(file);
    }
}

/// Run `jobs` several at a time; answers in order.
fn fetch(
    client: &Client,
    pat: Option<&Secret>,
    sid: Option<&str>,
    jobs: &[Job],
) -> Result<Vec<Answer>> {
    parallel(jobs, |job| match job {
        Job::Verify(token) => Answer::Verified(client.verify(token, sid)),
        Job::Details(id) => match pat {
            Some(pat) => Answer::Details(client.runner(pat, *id)),
            None => Answer::Details(Err(Error::internal("details without access token"))),
        },
        Job::TokenSelf(t) => Answer::TokenSelf(client.token_self(t)),
    })
}

/// How many requests run at once when the answers are independent.
const PARALLEL: usize = 8;

/// Run `f` on every item, up to `PARALLEL` at a time; results in order.
/// A stop (SIGTERM, SIGINT) ends it before the next batch starts.
pub fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Result<Vec<R>> {
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(PARALLEL) {
        crate::signals::check("reading from GitLab")?;
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
    Ok(out)
}

/// `--prune` without this GitLab's access token.
pub(super) fn prune_needs_access(s: &Settings) -> Error {
    match s.gitlab.as_ref().filter(|g| g.authority.is_some()) {
        Some(g) => Error::config(format!(
            "--prune needs an access-token (api scope) in {} to list and delete the runners of {}",
            g.token_dir(&s.prefix).display(),
            g.url
        )),
        None => Error::config(
            "--prune needs an access-token (api scope) in the prefix to list and delete runners",
        ),
    }
}
