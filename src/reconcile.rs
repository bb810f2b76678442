// SPDX-License-Identifier: MIT
//! The stateful reconcile: load and check every input before the network,
//! observe (verify tokens), decide per runner type with the pure `decide`,
//! then apply (or, for `plan`, only report), persisting state after every
//! token GitLab issues, and finally render and write `config.toml`.

use crate::cli::Command;
use crate::clock;
use crate::error::{Error, Kind, Result};
use crate::fsutil;
use crate::gitlab::api::RunnerDetails;
use crate::gitlab::{Client, IssuedToken, NewRunner, Verified};
use crate::host::Host;
use crate::secret::{Secret, TokenDirs, mask};
use crate::settings::{Registration, Settings};
use crate::state::{ConfigRunner, Entry, State, config_runners};
use crate::template::{RunnerValues, Template};
use std::collections::{BTreeMap, BTreeSet};

/// What GitLab said about a runner type's credential.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// No token in the state.
    Missing,
    /// GitLab rejected the token (403).
    Invalid,
    /// A valid token: the state's, or one gitlab-runner rotated itself and
    /// left in `config.toml` (`adopted`).
    Valid {
        token: Secret,
        /// The runner id verify answered (GitLab 15.10+).
        id: Option<u64>,
        adopted: bool,
        expires_at: Option<i64>,
        obtained_at: Option<i64>,
    },
}

/// What to do for one runner type.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing.
    Keep,
    /// Store what verify told us (expiry, first-seen time) in the state.
    Record,
    /// Take over the token gitlab-runner rotated.
    Adopt,
    /// Reset the token with itself, keeping the runner.
    Rotate { reason: String },
    /// Reset the token by runner id with the access token.
    Heal { id: u64 },
    /// Create a new runner; `orphan` is an old runner id left in GitLab.
    Create { orphan: Option<u64> },
}

/// Decide what a runner type needs. Pure: every input is a value.
pub fn decide(
    entry: &Entry,
    observed: &Observed,
    now: i64,
    rotate_before: i64,
    have_access_token: bool,
) -> Action {
    match observed {
        Observed::Missing => Action::Create { orphan: None },
        Observed::Invalid => match entry.id {
            Some(id) if have_access_token => Action::Heal { id },
            _ => Action::Create { orphan: entry.id },
        },
        Observed::Valid {
            id,
            adopted,
            expires_at,
            obtained_at,
            ..
        } => {
            if let Some(exp) = *expires_at {
                if now + rotate_before >= exp {
                    return Action::Rotate {
                        reason: format!("expires {}", clock::format(exp)),
                    };
                }
                if let Some(obt) = *obtained_at {
                    let due = obt + (exp - obt) * 3 / 4;
                    if obt < exp && now >= due {
                        return Action::Rotate {
                            reason: format!("past 75% of its lifetime ({})", clock::format(due)),
                        };
                    }
                }
            }
            if *adopted {
                Action::Adopt
            } else if entry.token_expires_at != *expires_at
                || entry.token_obtained_at.is_none()
                || (id.is_some() && *id != entry.id)
            {
                Action::Record
            } else {
                Action::Keep
            }
        }
    }
}

/// Everything read from disk, checked before any request.
pub struct Inputs {
    pub template: Template,
    pub state: State,
    pub host: Host,
    pub admin: Option<(Secret, std::path::PathBuf)>,
    pub access: Option<Secret>,
    pub system_id: Option<String>,
}

impl Inputs {
    pub fn load(s: &Settings) -> Result<Inputs> {
        let text = std::fs::read_to_string(&s.template).map_err(|e| Error::read(&s.template, e))?;
        let template = Template::parse(&text, &s.template.display().to_string())?;
        let (state, from_file) = if s.stateless {
            (State::with_types(template.runner_types()), true)
        } else {
            match State::load(&s.state)? {
                Some(st) => (st, true),
                None => (State::default_types(), false),
            }
        };
        if state.entries.is_empty() {
            return Err(Error::config(format!(
                "{} names no runner: use a field such as {{shell}} for each runner's token",
                s.template.display()
            )));
        }
        let types: BTreeSet<String> = state.entries.keys().cloned().collect();
        let origin = if from_file {
            format!("no such runner type in {}", s.state.display())
        } else {
            format!(
                "{} does not exist, so the runner types are batch and shell",
                s.state.display()
            )
        };
        template.check_types(&types, &origin)?;
        let used = template.runner_types();
        if let Some(unused) = types.iter().find(|t| !used.contains(*t)) {
            let fix = if from_file {
                format!(
                    "remove it from {} or use {{{unused}}} in the template",
                    s.state.display()
                )
            } else {
                format!(
                    "create {} listing the types the template uses, e.g. {{\"shell\": {{}}}}",
                    s.state.display()
                )
            };
            return Err(Error::config(format!(
                "runner type '{unused}' is never used by {}: {fix}",
                s.template.display()
            )));
        }
        for t in template.expiry_without_obtained() {
            log::warn!(
                "{} fills {{{t}.token_expires_at}} but not {{{t}.token_obtained_at}}: gitlab-runner will rotate that token at once on start",
                s.template.display()
            );
        }
        let path = std::env::var("PATH").ok();
        let host = Host::detect(s.hostname.clone(), path.as_deref(), s.tags.clone())?;
        let dirs = TokenDirs::new(s.credentials_dir.clone(), &s.prefix);
        let admin = dirs.read("admin-token")?;
        let access = dirs.read("access-token")?.map(|(t, _)| t);
        if s.stateless && access.is_none() {
            return Err(Error::config(format!(
                "--stateless needs an access token (api scope) in {}/access-token to find this host's runners in GitLab",
                s.prefix.display()
            )));
        }
        let system_id = crate::gitlab::read_system_id(&s.system_id);
        Ok(Inputs {
            template,
            state,
            host,
            admin,
            access,
            system_id,
        })
    }
}

#[derive(Default)]
struct Tally {
    verified: usize,
    created: usize,
    rotated: usize,
    healed: usize,
    adopted: usize,
    updated: usize,
    deleted: usize,
}

struct Engine<'a> {
    s: &'a Settings,
    client: Client,
    inputs: Inputs,
    now: i64,
    tally: Tally,
    /// `plan` output lines.
    plan: Vec<String>,
    /// Runner ids deleted (or, for `plan`, to be deleted) in this run.
    deleting: Vec<u64>,
}

/// Run `run` or `plan`; the exit code on success.
pub fn run(s: &Settings) -> Result<i32> {
    let Some(api_base) = s.api_base.as_deref() else {
        log::info!(
            "not configured: no GitLab API URL (set GITLAB_RUNNER_AUTH_API_URL in /etc/default/gitlab-runner-auth or pass --api-url); nothing to do"
        );
        return Ok(0);
    };
    if !s.prefix.is_dir() {
        return Err(Error::config(format!(
            "prefix {} is not a directory",
            s.prefix.display()
        )));
    }
    if s.stateless && matches!(s.command, Command::Status | Command::Unregister) {
        return Err(Error::usage(
            "status and unregister work on runner-data.json; they do not support --stateless yet",
        ));
    }
    let read_only = s.dry_run || s.command == Command::Status;
    let _lock = if read_only {
        None
    } else {
        Some(fsutil::lock(&s.lock, s.wait)?)
    };
    let inputs = Inputs::load(s)?;
    let client = Client::new(api_base, s.timeout, s.wait, s.ca_file.as_deref())?;
    match s.command {
        Command::Status => return crate::status::status(s, &client, &inputs),
        Command::Unregister => return crate::status::unregister(s, &client, inputs),
        Command::Run | Command::Plan => {}
    }
    let mut engine = Engine {
        s,
        client,
        inputs,
        now: clock::now(),
        tally: Tally::default(),
        plan: Vec::new(),
        deleting: Vec::new(),
    };
    match engine.reconcile() {
        Err(e)
            if e.kind() == Kind::Unreachable
                && s.offline_ok
                && s.config.is_file()
                && !s.dry_run =>
        {
            log::warn!("{e}");
            log::warn!(
                "GitLab is unreachable; keeping the existing {} (--offline-ok)",
                s.config.display()
            );
            summary(&format!("offline: kept {}", s.config.display()));
            Ok(0)
        }
        other => other,
    }
}

pub fn summary(text: &str) {
    log::info!(target: "gitlab_runner_auth::summary", "{text}");
}

impl Engine<'_> {
    fn reconcile(&mut self) -> Result<i32> {
        let existing = match config_runners(&self.s.config) {
            Ok(r) => r.unwrap_or_default(),
            Err(e) if e.kind() == Kind::Data => {
                log::warn!("{e}; it will be replaced");
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let observed = if self.s.stateless {
            self.observe_gitlab(&existing)?
        } else {
            self.observe(&existing)?
        };
        let have_pat = self.inputs.access.is_some();
        let types: Vec<String> = self.inputs.state.entries.keys().cloned().collect();
        let mut changes = 0;
        for (ty, obs) in types.iter().zip(observed) {
            let entry = &self.inputs.state.entries[ty];
            let action = decide(
                entry,
                &obs,
                self.now,
                self.s.rotate_before.as_secs() as i64,
                have_pat,
            );
            if action != Action::Keep {
                changes += 1;
            }
            if self.s.dry_run {
                self.plan
                    .push(describe(ty, entry, &obs, &action, &self.inputs.host));
            } else {
                self.apply(ty, obs, action)?;
            }
        }
        let wrote = self.write_config(&existing)?;
        changes += self.reconcile_tags();
        self.prune()?;
        changes += self.deleting.len();
        if self.s.dry_run {
            println!(
                "plan for {} against {}:",
                self.s.config.display(),
                self.s.api_url.as_deref().unwrap_or("?")
            );
            for line in &self.plan {
                println!("{line}");
            }
            let pending = changes > 0 || wrote;
            summary(&format!(
                "plan: {}",
                if pending {
                    "changes pending"
                } else {
                    "nothing to do"
                }
            ));
            return Ok(if pending { 2 } else { 0 });
        }
        let t = &self.tally;
        let counts = [
            (t.verified, "verified"),
            (t.created, "created"),
            (t.rotated, "rotated"),
            (t.healed, "healed"),
            (t.adopted, "adopted"),
            (t.updated, "updated"),
            (t.deleted, "deleted"),
        ];
        let done: Vec<String> = counts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        summary(&format!(
            "{} runner{} ok ({}); {} {}",
            types.len(),
            if types.len() == 1 { "" } else { "s" },
            if done.is_empty() {
                "nothing to do".to_string()
            } else {
                done.join(", ")
            },
            self.s.config.display(),
            if wrote { "written" } else { "unchanged" }
        ));
        Ok(0)
    }

    /// With an access token, bring each runner's description and tags on
    /// GitLab back to what this host registers. Failures only warn: the
    /// config is already good. The number of runners that drifted.
    fn reconcile_tags(&mut self) -> usize {
        let Some(pat) = self.inputs.access.clone() else {
            return 0;
        };
        let ids: Vec<(String, u64)> = self
            .inputs
            .state
            .entries
            .iter()
            .filter(|(_, e)| e.token.is_some())
            .filter_map(|(t, e)| Some((t.clone(), e.id?)))
            .collect();
        let mut drifted = 0;
        let found = parallel(&ids, |(_, id)| self.client.runner(&pat, *id));
        for ((ty, id), details) in ids.into_iter().zip(found) {
            let host = &self.inputs.host;
            let (want_desc, want_tags) = (host.description(&ty), host.tags(&ty));
            let details = match details {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) => {
                    log::warn!("cannot check the tags of {ty} runner {id}: {e}");
                    continue;
                }
            };
            let sorted = |v: &[String]| {
                let mut v = v.to_vec();
                v.sort();
                v.dedup();
                v
            };
            let have_desc = details.description.unwrap_or_default();
            if have_desc == want_desc && sorted(&details.tag_list) == sorted(&want_tags) {
                continue;
            }
            drifted += 1;
            let change = format!(
                "'{have_desc}' [{}] -> '{want_desc}' [{}]",
                details.tag_list.join(","),
                want_tags.join(",")
            );
            if self.s.dry_run {
                self.plan.push(format!(
                    "{ty} (runner {id}): would update description and tags on GitLab: {change}"
                ));
                continue;
            }
            match self.client.update(&pat, id, &want_desc, &want_tags) {
                Ok(()) => {
                    self.tally.updated += 1;
                    log::info!("updated {ty} runner {id} on GitLab: {change}");
                }
                Err(e) => log::warn!("cannot update {ty} runner {id}: {e}"),
            }
        }
        drifted
    }

    /// `--prune`: delete this host's runners (tagged with the hostname,
    /// described `<hostname>-…`) that the state does not hold, within
    /// `--max-delete`.
    fn prune(&mut self) -> Result<()> {
        if !self.s.prune {
            return Ok(());
        }
        let Some(pat) = self.inputs.access.clone() else {
            return Err(Error::config(
                "--prune needs an access-token (api scope) in the prefix to list and delete runners",
            ));
        };
        let hostname = self.inputs.host.hostname.clone();
        let keep: Vec<u64> = self
            .inputs
            .state
            .entries
            .values()
            .filter_map(|e| e.id)
            .collect();
        let mine = format!("{hostname}-");
        let doomed: Vec<_> = self
            .client
            .list_tagged(&pat, self.s.scope, std::slice::from_ref(&hostname))?
            .into_iter()
            .filter(|r| !keep.contains(&r.id) && !self.deleting.contains(&r.id))
            .filter(|r| {
                r.description
                    .as_deref()
                    .is_some_and(|d| d.starts_with(&mine))
            })
            .collect();
        self.delete_runners(&pat, &doomed, "--prune", "not configured on this host")
    }

    /// Delete (for `plan`: list) `doomed`, unless that would make more than
    /// `--max-delete` deletions in this run.
    fn delete_runners(
        &mut self,
        pat: &Secret,
        doomed: &[RunnerDetails],
        what: &str,
        why: &str,
    ) -> Result<()> {
        if doomed.is_empty() {
            return Ok(());
        }
        if self.deleting.len() + doomed.len() > self.s.max_delete {
            let ids: Vec<String> = doomed.iter().map(|r| r.id.to_string()).collect();
            return Err(Error::config(format!(
                "{what}: {} runners tagged {} are {why} (ids {}), more than --max-delete {}{}; none deleted: check them in GitLab, then raise --max-delete",
                doomed.len(),
                self.inputs.host.hostname,
                ids.join(", "),
                self.s.max_delete,
                if self.deleting.is_empty() {
                    String::new()
                } else {
                    format!(" with the {} deleted before", self.deleting.len())
                }
            )));
        }
        for r in doomed {
            self.deleting.push(r.id);
            let desc = r.description.clone().unwrap_or_default();
            if self.s.dry_run {
                self.plan
                    .push(format!("would delete runner {} ('{desc}'): {why}", r.id));
            } else if self.client.delete(pat, r.id)? {
                self.tally.deleted += 1;
                log::info!("deleted runner {} ('{desc}'): {why}", r.id);
            }
        }
        Ok(())
    }

    /// Stateless: find this host's runners in GitLab (tagged with the
    /// hostname, mapped to a type by description `<hostname>-<type>` or by
    /// tag), take the token `config.toml` holds when it verifies for the
    /// runner, delete extra runners of a type (keeping the one whose token is
    /// held, else the newest), and fill the in-memory state from that.
    fn observe_gitlab(&mut self, existing: &[ConfigRunner]) -> Result<Vec<Observed>> {
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
        let type_of = |d: &RunnerDetails| -> Option<&String> {
            let desc = d.description.as_deref().unwrap_or("");
            types
                .iter()
                .find(|t| desc == host.description(t))
                .or_else(|| {
                    let by_tag: Vec<&String> =
                        types.iter().filter(|t| d.tag_list.contains(t)).collect();
                    (by_tag.len() == 1).then(|| by_tag[0])
                })
        };
        let mut out = Vec::new();
        let mut extra = Vec::new();
        let mut chosen = Vec::new();
        for ty in &types {
            let mut mine: Vec<&RunnerDetails> =
                details.iter().filter(|d| type_of(d) == Some(ty)).collect();
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
        self.delete_runners(
            &pat,
            &extra,
            "--stateless",
            "extra runners of a type this host already has",
        )?;
        Ok(out)
    }

    /// Verify every token: first those in `config.toml` that the state does
    /// not hold (gitlab-runner may have rotated them), then the state's.
    fn observe(&mut self, existing: &[ConfigRunner]) -> Result<Vec<Observed>> {
        let entries = &self.inputs.state.entries;
        let known: Vec<&Secret> = entries.values().filter_map(|e| e.token.as_ref()).collect();
        // Tokens written literally in the template are the admin's own.
        let unknown: Vec<&ConfigRunner> = existing
            .iter()
            .filter(|r| {
                !known.contains(&&r.token) && !self.inputs.template.has_literal(r.token.expose())
            })
            .collect();
        let mut adoptable: Vec<(u64, &ConfigRunner, Option<i64>)> = Vec::new();
        for (r, verified) in unknown.iter().zip(self.verify_all(&unknown, |r| &r.token)?) {
            match verified {
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
        let adopted = |e: &Entry| adoptable.iter().find(|(id, _, _)| Some(*id) == e.id);
        let to_verify: Vec<(&String, &Entry, &Secret)> = entries
            .iter()
            .filter(|(_, e)| adopted(e).is_none())
            .filter_map(|(ty, e)| Some((ty, e, e.token.as_ref()?)))
            .collect();
        let mut answers = to_verify
            .iter()
            .zip(self.verify_all(&to_verify, |(_, _, t)| t)?)
            .map(|((ty, _, _), v)| ((*ty).clone(), v))
            .collect::<BTreeMap<String, Verified>>();
        let mut out = Vec::new();
        for (ty, entry) in entries {
            if let Some((_, r, expires_at)) = adopted(entry) {
                out.push(Observed::Valid {
                    token: r.token.clone(),
                    id: entry.id,
                    adopted: true,
                    expires_at: *expires_at,
                    obtained_at: r.token_obtained_at.or(Some(self.now)),
                });
                continue;
            }
            let (Some(token), Some(verified)) = (&entry.token, answers.remove(ty)) else {
                out.push(Observed::Missing);
                continue;
            };
            let obs = match verified {
                Verified::Valid { expires_at, id } => {
                    self.tally.verified += 1;
                    if let (Some(got), Some(want)) = (id, entry.id)
                        && got != want
                    {
                        log::warn!(
                            "{ty}: GitLab says the token belongs to runner {got}, runner-data.json says {want}; recording {got}"
                        );
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
                    Observed::Invalid
                }
            };
            out.push(obs);
        }
        Ok(out)
    }

    /// Verify the token of every item, several at a time; answers in order.
    fn verify_all<T: Sync>(
        &self,
        items: &[T],
        token: impl Fn(&T) -> &Secret + Sync,
    ) -> Result<Vec<Verified>> {
        let sid = self.inputs.system_id.as_deref();
        parallel(items, |item| self.client.verify(token(item), sid))
            .into_iter()
            .collect()
    }

    fn apply(&mut self, ty: &str, obs: Observed, action: Action) -> Result<()> {
        let (token, id, expires_at, obtained_at) = match &obs {
            Observed::Valid {
                token,
                id,
                expires_at,
                obtained_at,
                ..
            } => (Some(token.clone()), *id, *expires_at, *obtained_at),
            _ => (None, None, None, None),
        };
        match action {
            Action::Keep => Ok(()),
            Action::Record | Action::Adopt => {
                let adopt = action == Action::Adopt;
                let e = self.entry(ty);
                if adopt {
                    e.token = token;
                }
                e.id = id.or(e.id);
                e.token_expires_at = expires_at;
                e.token_obtained_at = obtained_at;
                let id = e.id;
                if !adopt {
                    return self.save_state();
                }
                self.tally.adopted += 1;
                self.save_state()?;
                log::info!(
                    "adopted the token gitlab-runner rotated for {ty} runner {}",
                    id.unwrap_or(0)
                );
                Ok(())
            }
            Action::Rotate { reason } => {
                let token = token.ok_or_else(|| Error::internal("rotate without a token"))?;
                match self.client.reset_by_token(&token)? {
                    Some(new) => {
                        self.store(ty, new)?;
                        self.tally.rotated += 1;
                        log::info!(
                            "rotated {ty} runner {} token ({reason})",
                            self.entry(ty).id.unwrap_or(0)
                        );
                        Ok(())
                    }
                    None => {
                        log::warn!(
                            "{ty} runner: GitLab refused to rotate the token; treating it as invalid"
                        );
                        let entry = self.inputs.state.entries[ty].clone();
                        let next = decide(
                            &entry,
                            &Observed::Invalid,
                            self.now,
                            0,
                            self.inputs.access.is_some(),
                        );
                        self.apply(ty, Observed::Invalid, next)
                    }
                }
            }
            Action::Heal { id } => {
                let pat = self
                    .inputs
                    .access
                    .clone()
                    .ok_or_else(|| Error::internal("heal without access token"))?;
                match self.client.reset_by_id(&pat, id)? {
                    Some(new) => {
                        self.store(ty, new)?;
                        self.tally.healed += 1;
                        log::info!("healed {ty} runner {id}: reset its token by id");
                        Ok(())
                    }
                    None => {
                        log::info!(
                            "{ty} runner {id} no longer exists in GitLab; creating a new one"
                        );
                        self.apply(ty, Observed::Invalid, Action::Create { orphan: None })
                    }
                }
            }
            Action::Create { orphan } => {
                let new = self.create(ty)?;
                let id = new.id;
                self.store(ty, new)?;
                self.tally.created += 1;
                log::info!(
                    "created {ty} runner {} ({}, tags {})",
                    id.map_or("?".into(), |i| i.to_string()),
                    self.inputs.host.description(ty),
                    self.inputs.host.tags(ty).join(",")
                );
                if let Some(old) = orphan.filter(|o| Some(*o) != id) {
                    log::warn!(
                        "old {ty} runner {old} may remain in GitLab: delete it there (an access-token in the prefix lets this tool heal runners instead)"
                    );
                }
                Ok(())
            }
        }
    }

    fn create(&self, ty: &str) -> Result<IssuedToken> {
        let Some((admin, path)) = &self.inputs.admin else {
            return Err(Error::config(format!(
                "cannot create the {ty} runner: no admin-token in {}{}",
                self.s.prefix.display(),
                if self.s.credentials_dir.is_some() {
                    " or $CREDENTIALS_DIRECTORY"
                } else {
                    ""
                }
            )));
        };
        let tags = self.inputs.host.tags(ty);
        let description = self.inputs.host.description(ty);
        let new = NewRunner {
            description: &description,
            tags: &tags,
            scope: self.s.scope,
        };
        let user_runners = match self.s.registration {
            Registration::Legacy => false,
            Registration::UserRunners => true,
            Registration::Auto => is_access_token(admin.expose()),
        };
        let issued = if user_runners {
            self.client.create(admin, &new)
        } else {
            self.client.register(admin, &new)
        };
        issued.map_err(|e| {
            e.context(format!(
                "failed to create the {ty} runner with {}",
                path.display()
            ))
        })
    }

    fn entry(&mut self, ty: &str) -> &mut Entry {
        self.inputs
            .state
            .entries
            .get_mut(ty)
            .expect("runner type from the state")
    }

    /// Store a token GitLab just issued and persist it at once: the old token
    /// is already dead.
    fn store(&mut self, ty: &str, new: IssuedToken) -> Result<()> {
        let now = self.now;
        let e = self.entry(ty);
        if new.id.is_some() {
            e.id = new.id;
        }
        e.token = Some(new.token);
        e.token_expires_at = new.expires_at;
        e.token_obtained_at = Some(now);
        self.save_state()
    }

    /// Persist the state (stateful mode only).
    fn save_state(&self) -> Result<()> {
        if self.s.stateless {
            return Ok(());
        }
        self.inputs.state.save(&self.s.state)
    }

    /// Render, check, and write `config.toml` when its bytes change (for
    /// `plan`: print the diff). Whether it (would have) changed.
    fn write_config(&mut self, existing: &[ConfigRunner]) -> Result<bool> {
        let placeholders: Vec<(String, String)> = self
            .inputs
            .state
            .entries
            .iter()
            .filter(|(_, e)| e.token.is_none())
            .map(|(t, _)| (t.clone(), format!("<new token for {t}>")))
            .collect();
        let state = &self.inputs.state;
        let rendered = self
            .inputs
            .template
            .render(&self.inputs.host.hostname, |ty| {
                let e = state.entries.get(ty)?;
                let token = match &e.token {
                    Some(t) => t.expose(),
                    None => placeholders.iter().find(|(t, _)| t == ty)?.1.as_str(),
                };
                Some(RunnerValues {
                    token,
                    id: e.id,
                    token_obtained_at: e.token_obtained_at,
                    token_expires_at: e.token_expires_at,
                })
            })?;
        if let Err(e) = rendered.parse::<toml::Table>() {
            return Err(Error::data(format!(
                "{} renders to invalid TOML ({}); {} left unchanged",
                self.s.template.display(),
                crate::state::one_line(e.message()),
                self.s.config.display()
            )));
        }
        let old = std::fs::read(&self.s.config).ok();
        if old.as_deref() == Some(rendered.as_bytes()) {
            return Ok(false);
        }
        if self.s.dry_run {
            let old_text = String::from_utf8_lossy(old.as_deref().unwrap_or_default()).into_owned();
            let mut secrets: Vec<&str> = state
                .entries
                .values()
                .filter_map(|e| e.token.as_ref())
                .map(Secret::expose)
                .collect();
            secrets.extend(existing.iter().map(|r| r.token.expose()));
            let masked = |t: &str| mask_tokens(t, &secrets);
            self.plan.push(format!(
                "would {} {}:",
                if old.is_some() { "rewrite" } else { "create" },
                self.s.config.display()
            ));
            for line in crate::diff::lines(&masked(&old_text), &masked(&rendered), 3) {
                self.plan.push(format!("  {line}"));
            }
            return Ok(true);
        }
        fsutil::write_atomic(&self.s.config, rendered.as_bytes())?;
        log::info!("wrote {}", self.s.config.display());
        Ok(true)
    }
}

/// How many requests run at once when the answers are independent.
const PARALLEL: usize = 8;

/// Run `f` on every item, up to `PARALLEL` at a time; results in order.
fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
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

/// Replace every known token, and every `token = "…"` value, by its mask.
pub fn mask_tokens(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s, &mask(s));
    }
    out.lines()
        .map(|line| {
            let t = line.trim_start();
            match t
                .strip_prefix("token")
                .map(str::trim_start)
                .and_then(|r| r.strip_prefix('='))
            {
                Some(v) if v.trim().starts_with('"') && !v.contains('…') && !v.contains("\"<") => {
                    let value = v.trim().trim_matches('"');
                    format!(
                        "{}token = \"{}\"",
                        &line[..line.len() - t.len()],
                        mask(value)
                    )
                }
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Does this admin-token look like an access token (for `POST /user/runners`)?
pub fn is_access_token(token: &str) -> bool {
    ["glpat-", "glgat-", "glpt-"]
        .iter()
        .any(|p| token.starts_with(p) || token.contains(&format!("-{p}")))
}

/// One `plan` line for a runner type.
fn describe(ty: &str, entry: &Entry, obs: &Observed, action: &Action, host: &Host) -> String {
    let id = entry
        .id
        .map_or("no id".to_string(), |i| format!("runner {i}"));
    let state = match obs {
        Observed::Missing => "no token".to_string(),
        Observed::Invalid => "token rejected by GitLab".to_string(),
        Observed::Valid { expires_at, .. } => format!(
            "token valid{}",
            expires_at.map_or(", never expires".into(), |e| format!(
                " until {}",
                clock::format(e)
            ))
        ),
    };
    let what = match action {
        Action::Keep => "nothing to do".to_string(),
        Action::Record => "would record the token's expiry in runner-data.json".to_string(),
        Action::Adopt => {
            "would adopt the token gitlab-runner rotated (from config.toml)".to_string()
        }
        Action::Rotate { reason } => format!("would rotate the token: {reason}"),
        Action::Heal { id } => {
            format!("would heal: reset runner {id}'s token with the access token")
        }
        Action::Create { orphan } => format!(
            "would create runner '{}' tagged {}{}",
            host.description(ty),
            host.tags(ty).join(","),
            orphan.map_or(String::new(), |o| format!(
                " (old runner {o} may remain in GitLab)"
            ))
        ),
    };
    format!("{ty} ({id}): {state}; {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: Option<u64>, expires: Option<i64>, obtained: Option<i64>) -> Entry {
        Entry {
            id,
            token: Some(Secret::new("t")),
            token_expires_at: expires,
            token_obtained_at: obtained,
            ..Entry::default()
        }
    }

    fn valid(expires: Option<i64>, obtained: Option<i64>, adopted: bool) -> Observed {
        Observed::Valid {
            token: Secret::new("t"),
            id: Some(5),
            adopted,
            expires_at: expires,
            obtained_at: obtained,
        }
    }

    #[test]
    fn decisions() {
        let now = 1_000_000;
        let day = 86_400;
        let cases: Vec<(Entry, Observed, i64, bool, Action)> = vec![
            (
                Entry::default(),
                Observed::Missing,
                0,
                true,
                Action::Create { orphan: None },
            ),
            (
                entry(Some(5), None, Some(now)),
                Observed::Invalid,
                0,
                true,
                Action::Heal { id: 5 },
            ),
            (
                entry(Some(5), None, Some(now)),
                Observed::Invalid,
                0,
                false,
                Action::Create { orphan: Some(5) },
            ),
            (
                entry(None, None, Some(now)),
                Observed::Invalid,
                0,
                true,
                Action::Create { orphan: None },
            ),
            (
                entry(Some(5), None, Some(now)),
                valid(None, Some(now), false),
                0,
                false,
                Action::Keep,
            ),
            // expiry learned → record it
            (
                entry(Some(5), None, Some(now)),
                valid(Some(now + 30 * day), Some(now), false),
                0,
                false,
                Action::Record,
            ),
            // no obtained time (the original's file) → record it
            (
                entry(Some(5), None, None),
                valid(None, Some(now), false),
                0,
                false,
                Action::Record,
            ),
            // 74% of the lifetime: keep; 75%: rotate
            (
                entry(Some(5), Some(now + 26 * day), Some(now - 74 * day)),
                valid(Some(now + 26 * day), Some(now - 74 * day), false),
                0,
                false,
                Action::Keep,
            ),
            (
                entry(Some(5), Some(now + 25 * day), Some(now - 75 * day)),
                valid(Some(now + 25 * day), Some(now - 75 * day), false),
                0,
                false,
                Action::Rotate {
                    reason: format!("past 75% of its lifetime ({})", clock::format(now)),
                },
            ),
            // --rotate-before
            (
                entry(Some(5), Some(now + day), Some(now)),
                valid(Some(now + day), Some(now), false),
                2 * day,
                false,
                Action::Rotate {
                    reason: format!("expires {}", clock::format(now + day)),
                },
            ),
            (
                valid_entry_adopt(),
                valid(None, Some(now), true),
                0,
                false,
                Action::Adopt,
            ),
        ];
        for (i, (e, obs, before, pat, want)) in cases.into_iter().enumerate() {
            assert_eq!(decide(&e, &obs, now, before, pat), want, "case {i}");
        }
    }

    fn valid_entry_adopt() -> Entry {
        entry(Some(5), None, Some(1))
    }

    #[test]
    fn access_token_prefixes() {
        for (t, want) in [
            ("glpat-abc", true),
            ("glgat-abc", true),
            ("glpt-abc", true),
            ("mycorp-glpat-abc", true),
            ("GR1348941abc", false),
            ("glrt-abc", false),
            ("abcdef", false),
        ] {
            assert_eq!(is_access_token(t), want, "{t}");
        }
    }

    #[test]
    fn masks_tokens_in_text() {
        let text = "[[runners]]\n  token = \"glrt-abcdefghijklmnopqrst\"\n  url = \"x\"\n  env = [\"T=secretsecretsecret1234\"]";
        let out = mask_tokens(text, &["secretsecretsecret1234"]);
        assert!(!out.contains("glrt-abcdefghijklmnopqrst"));
        assert!(!out.contains("secretsecretsecret1234"));
        assert!(out.contains("  token = \"glrt-…qrst\""));
        assert!(out.contains("T=…1234"));
    }
}
