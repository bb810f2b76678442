// SPDX-License-Identifier: MIT
//! Planning: from the inputs and the observation alone (no I/O; the time is
//! a value), what this run will change, as typed changes with their
//! reasons. The ownership rule and the `--max-delete` budget are applied
//! here. `plan` prints the plan, `plan --json` serialises it, `run` applies
//! it, `unregister` is a plan of its own.

use super::Inputs;
use super::decide::{Action, Observed, decide};
use super::observe::{Details, Observation};
use crate::clock;
use crate::error::{Error, Result};
use crate::gitlab::Verified;
use crate::gitlab::api::RunnerDetails;
use crate::secret::{Secret, mask_tokens};
use crate::settings::Settings;
use crate::state::{Entry, State};
use serde_json::{Value, json};

/// One change to GitLab or to this host's files.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Record in the state what GitLab said of a held token (its runner
    /// id, its expiry): no request.
    Record {
        ty: String,
        id: Option<u64>,
        expires_at: Option<i64>,
        obtained_at: Option<i64>,
    },
    /// Take a valid token the state does not hold: one gitlab-runner
    /// rotated itself (in `config.toml`), one a killed run left in a
    /// temporary file, or (stateless) the one `config.toml` holds.
    Adopt {
        ty: String,
        id: Option<u64>,
        token: Secret,
        expires_at: Option<i64>,
        obtained_at: Option<i64>,
        from: Source,
    },
    /// Reset the token with itself (`POST /runners/reset_authentication_token`).
    Rotate {
        ty: String,
        id: Option<u64>,
        token: Secret,
        reason: String,
    },
    /// Reset the token by runner id with the access token: the runner, its
    /// projects and its history stay.
    Heal { ty: String, id: u64, reason: String },
    /// Create a runner; `orphan` is an old runner id that may remain.
    Create {
        ty: String,
        description: String,
        tags: Vec<String>,
        orphan: Option<u64>,
        reason: String,
        /// Whether the reason is a warning (another host's runner).
        warn: bool,
    },
    /// Put a runner's description and tags back (`PUT /runners/:id`).
    UpdateRunner {
        ty: String,
        id: u64,
        from: (String, Vec<String>),
        to: (String, Vec<String>),
    },
    /// Delete a runner by id with the access token.
    Delete {
        id: u64,
        description: String,
        reason: String,
    },
    /// Delete a runner with its own token (no access token).
    DeleteByToken { ty: String, token: Secret },
    /// Clear a runner type's state entry (unregister).
    Clear { ty: String },
    /// Drop a pending-create record once the runner it may have made was
    /// looked for.
    ClearPending { ty: String, reason: String },
    /// Remove a temporary file a killed run left.
    RemoveFile { path: std::path::PathBuf },
}

/// Where an adopted token was found.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// `config.toml`: gitlab-runner rotated it.
    Config(std::path::PathBuf),
    /// A temporary file a killed run left.
    Leftover(std::path::PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Config(p) => write!(f, "{} (gitlab-runner rotated it)", p.display()),
            Source::Leftover(p) => write!(f, "{} (left by a run that was stopped)", p.display()),
        }
    }
}

/// What GitLab said of one runner type, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeView {
    pub ty: String,
    pub id: Option<u64>,
    pub observed: String,
}

/// What `config.toml` would become.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigChange {
    pub create: bool,
    /// A diff with every token masked (new tokens as placeholders).
    pub diff: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub types: Vec<TypeView>,
    pub changes: Vec<Change>,
    pub config: Option<ConfigChange>,
    /// Stateless: the runners GitLab holds for this host, as the state
    /// `apply` starts from (no state file is read).
    pub start: Option<State>,
    /// This GitLab's entries as the plan leaves them (new tokens as
    /// placeholders): how the next GitLab's plan shows them.
    pub after: State,
}

impl Plan {
    /// Whether running it would change anything.
    pub fn pending(&self) -> bool {
        !self.changes.is_empty() || self.config.is_some()
    }
}

/// The plan of `run`.
pub fn plan(s: &Settings, inputs: &Inputs, obs: &Observation) -> Result<Plan> {
    let mut p = Planner {
        s,
        inputs,
        obs,
        plan: Plan::default(),
        state: inputs.state.clone(),
        keep: Vec::new(),
    };
    if s.stateless {
        p.stateless()?;
    } else {
        p.stateful()?;
    }
    p.drift();
    if s.prune {
        p.prune();
    }
    p.budget()?;
    for path in &obs.leftover_files {
        p.plan
            .changes
            .push(Change::RemoveFile { path: path.clone() });
    }
    p.plan.config = p.config()?;
    p.plan.after = p.state.clone();
    Ok(p.plan)
}

/// The plan of `unregister`: delete this host's runners (by the ownership
/// rule, with the access token; else with their own tokens) and clear the
/// state.
pub fn unregister(s: &Settings, inputs: &Inputs, obs: &Observation) -> Result<Plan> {
    let mut p = Planner {
        s,
        inputs,
        obs,
        plan: Plan::default(),
        state: inputs.state.clone(),
        keep: Vec::new(),
    };
    let host = &inputs.host;
    if s.stateless {
        for ty in inputs.state.entries.keys() {
            for d in p.mine(ty) {
                p.plan.changes.push(Change::Delete {
                    id: d.id,
                    description: d.description.clone().unwrap_or_default(),
                    reason: "unregister".into(),
                });
            }
        }
        return Ok(p.plan);
    }
    for (ty, e) in &inputs.state.entries {
        let verified_id = match obs.verified.get(ty) {
            Some(Verified::Valid { id, .. }) => *id,
            _ => None,
        };
        let id = e.id.or(verified_id);
        match (&inputs.access, id, &e.token) {
            (Some(_), Some(id), _) => match obs.details.get(&id) {
                Some(Details::Found(d)) => {
                    let desc = d.description.clone().unwrap_or_default();
                    if host.owns(&desc, &d.tag_list, ty) {
                        p.plan.changes.push(Change::Delete {
                            id,
                            description: desc,
                            reason: "unregister".into(),
                        });
                    } else {
                        p.view(
                            ty,
                            Some(id),
                            format!(
                                "runner {id} ('{}') is another host's: not deleted",
                                shown(&desc)
                            ),
                        );
                    }
                }
                Some(Details::Unreadable { kind, message }) => {
                    return Err(Error::new(
                        *kind,
                        format!("cannot tell whether {ty} runner {id} is this host's: {message}"),
                    ));
                }
                Some(Details::Gone) | None => {
                    p.view(ty, Some(id), "no longer in GitLab".into());
                }
            },
            (None, _, Some(token)) => p.plan.changes.push(Change::DeleteByToken {
                ty: ty.clone(),
                token: token.clone(),
            }),
            _ => {}
        }
        if *e != Entry::default() {
            p.plan.changes.push(Change::Clear { ty: ty.clone() });
        }
    }
    Ok(p.plan)
}

struct Planner<'a> {
    s: &'a Settings,
    inputs: &'a Inputs,
    obs: &'a Observation,
    plan: Plan,
    /// The state as the plan leaves it, new tokens as placeholders.
    state: State,
    /// (type, runner id) of the runners this host keeps as they are.
    keep: Vec<(String, u64)>,
}

impl Planner<'_> {
    fn view(&mut self, ty: &str, id: Option<u64>, observed: String) {
        self.plan.types.push(TypeView {
            ty: ty.to_string(),
            id,
            observed,
        });
    }

    fn stateful(&mut self) -> Result<()> {
        let (inputs, obs) = (self.inputs, self.obs);
        let host = &inputs.host;
        let pat = inputs.access.is_some();
        for (ty, entry) in &inputs.state.entries {
            // A state entry GitLab shows as another host's is left alone.
            if pat
                && let Some(id) = entry.id
                && let Some(d) = obs.runner(id)
                && !owns(host, d, ty)
            {
                let desc = d.description.clone().unwrap_or_default();
                self.view(
                    ty,
                    Some(id),
                    format!(
                        "runner {id} ('{}') is another host's, left alone",
                        shown(&desc)
                    ),
                );
                self.create_instead(
                    ty,
                    format!(
                        "{} holds runner {id} ('{}', tags {}), which GitLab shows as another host's (copied from another node?); leaving it alone and creating {}'s own {ty} runner",
                        self.s.state_path.display(),
                        shown(&desc),
                        shown(&d.tag_list.join(",")),
                        host.hostname
                    ),
                );
                continue;
            }
            // A token a killed run left, or that gitlab-runner rotated.
            if let Some(adopt) = self.adoptable(ty, entry)? {
                self.push_adopt(adopt);
                continue;
            }
            let (observed, verified_id) = match (&entry.token, obs.verified.get(ty)) {
                (Some(token), Some(Verified::Valid { id, expires_at })) => (
                    Observed::Valid {
                        token: token.clone(),
                        id: *id,
                        expires_at: *expires_at,
                        obtained_at: entry.token_obtained_at.or(Some(obs.now)),
                    },
                    *id,
                ),
                (Some(_), _) => (Observed::Invalid, None),
                (None, _) => (Observed::Missing, None),
            };
            // verify named another runner than the state: it must be ours
            if pat
                && let (Some(got), Some(want)) = (verified_id, entry.id)
                && got != want
                && let Some(d) = obs.runner(got)
                && !owns(host, d, ty)
            {
                let desc = d.description.clone().unwrap_or_default();
                self.view(
                    ty,
                    Some(got),
                    format!(
                        "runner {got} ('{}') is another host's, left alone",
                        shown(&desc)
                    ),
                );
                self.create_instead(
                    ty,
                    format!(
                        "the token in {} belongs to another host's runner {got}",
                        self.s.state_path.display()
                    ),
                );
                continue;
            }
            let action = decide(
                entry,
                &observed,
                obs.now,
                self.s.rotate_before.as_secs() as i64,
                pat,
            );
            self.view(ty, entry.id.or(verified_id), describe_observed(&observed));
            let creates = matches!(action, Action::Create { .. });
            self.action(ty, entry, observed, action)?;
            if !creates && entry.token.is_some() && entry.create_pending_since.is_some() {
                self.sweep(ty, entry);
            }
        }
        Ok(())
    }

    /// A type created again after a lost answer: the first create may have
    /// landed late. With an access token its runner (this host's, of this
    /// type, not in the state) is deleted; without one it is named.
    fn sweep(&mut self, ty: &str, entry: &Entry) {
        let held: Vec<u64> = self
            .inputs
            .state
            .entries
            .values()
            .filter_map(|e| e.id)
            .collect();
        let late: Vec<RunnerDetails> = if self.inputs.access.is_some() {
            self.mine(ty)
                .into_iter()
                .filter(|d| !held.contains(&d.id))
                .collect()
        } else {
            Vec::new()
        };
        for d in &late {
            self.plan.changes.push(Change::Delete {
                id: d.id,
                description: d.description.clone().unwrap_or_default(),
                reason: format!(
                    "made by a create whose answer was lost, after which runner {} was made",
                    entry.id.unwrap_or(0)
                ),
            });
        }
        let reason = if self.inputs.access.is_some() {
            String::new()
        } else {
            format!(
                "a {ty} runner '{}' made by a create whose answer was lost may remain in GitLab",
                self.inputs.host.description(ty)
            )
        };
        self.plan.changes.push(Change::ClearPending {
            ty: ty.to_string(),
            reason,
        });
    }

    /// A leftover or `config.toml` token that verifies for this type's
    /// runner (with an access token: one GitLab shows as this host's).
    fn adoptable(&self, ty: &str, entry: &Entry) -> Result<Option<Change>> {
        let obs = self.obs;
        for l in &obs.leftovers {
            let Verified::Valid { id, expires_at } = &l.verified else {
                continue;
            };
            if entry.token.as_ref() == Some(&l.token) {
                continue;
            }
            let same_runner = id.is_some() && *id == entry.id;
            let for_type = l.ty.as_deref() == Some(ty)
                && (entry.token.is_none()
                    || entry.create_pending_since.is_some()
                    || !matches!(obs.verified.get(ty), Some(Verified::Valid { .. })));
            if !(same_runner || for_type) || !self.owned_or_unknowable(ty, *id)? {
                continue;
            }
            return Ok(Some(Change::Adopt {
                ty: ty.to_string(),
                id: id.or(entry.id),
                token: l.token.clone(),
                expires_at: *expires_at,
                obtained_at: Some(obs.now),
                from: Source::Leftover(l.file.clone()),
            }));
        }
        for (r, v) in &obs.unknown {
            if let Verified::Valid {
                id: Some(id),
                expires_at,
            } = v
                && Some(*id) == entry.id
                && self.owned_or_unknowable(ty, Some(*id))?
            {
                return Ok(Some(Change::Adopt {
                    ty: ty.to_string(),
                    id: Some(*id),
                    token: r.token.clone(),
                    expires_at: *expires_at,
                    obtained_at: r.token_obtained_at.or(Some(obs.now)),
                    from: Source::Config(self.s.config_path.clone()),
                }));
            }
        }
        Ok(None)
    }

    /// With an access token: is runner `id` this host's `ty` runner? An
    /// unreadable answer is an error (its token must not be touched).
    /// Without one: nothing can be checked (true).
    fn owned_or_unknowable(&self, ty: &str, id: Option<u64>) -> Result<bool> {
        let (Some(_), Some(id)) = (&self.inputs.access, id) else {
            return Ok(true);
        };
        match self.obs.details.get(&id) {
            Some(Details::Found(d)) => Ok(owns(&self.inputs.host, d, ty)),
            Some(Details::Gone) => Ok(false),
            Some(Details::Unreadable { kind, message }) => Err(Error::new(
                *kind,
                format!(
                    "cannot tell whether {ty} runner {id} is this host's, so its token is left alone: {message}"
                ),
            )),
            None => Ok(true),
        }
    }

    /// The change `decide` asked for, with the checks that need the
    /// observation.
    fn action(
        &mut self,
        ty: &str,
        entry: &Entry,
        observed: Observed,
        action: Action,
    ) -> Result<()> {
        let (token, verified_id, expires_at, obtained_at) = match &observed {
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
            Action::Keep => {
                if let Some(id) = entry.id {
                    self.keep.push((ty.to_string(), id));
                }
            }
            Action::Record => {
                let id = verified_id.or(entry.id);
                self.keep.extend(id.map(|i| (ty.to_string(), i)));
                let record = Change::Record {
                    ty: ty.to_string(),
                    id,
                    expires_at,
                    obtained_at,
                };
                self.apply_state(ty, |e| record.update(e));
                self.plan.changes.push(record);
            }
            Action::Rotate { reason } => {
                let id = verified_id.or(entry.id);
                if !self.owned_or_unknowable(ty, id)? {
                    return Err(Error::denied(format!(
                        "{ty} runner {} is not this host's: its token is left alone",
                        id.unwrap_or(0)
                    )));
                }
                self.keep.extend(id.map(|i| (ty.to_string(), i)));
                self.placeholder(ty, id);
                self.plan.changes.push(Change::Rotate {
                    ty: ty.to_string(),
                    id,
                    token: token.unwrap_or_else(|| Secret::new("")),
                    reason,
                });
            }
            Action::Heal { id } => match self.obs.details.get(&id) {
                Some(Details::Gone) => {
                    self.create(ty, None, format!("runner {id} no longer exists in GitLab"))
                }
                Some(Details::Unreadable { kind, message }) => {
                    return Err(Error::new(
                        *kind,
                        format!(
                            "cannot heal the {ty} runner {id} without knowing it is this host's: {message}"
                        ),
                    ));
                }
                _ => {
                    self.keep.push((ty.to_string(), id));
                    self.placeholder(ty, Some(id));
                    self.plan.changes.push(Change::Heal {
                        ty: ty.to_string(),
                        id,
                        reason: "its token was rejected (unknown, deleted or expired)".into(),
                    });
                }
            },
            Action::Create { orphan } => {
                let reason = match &observed {
                    Observed::Missing => "no token".to_string(),
                    _ => "its token was rejected and no access-token can heal it".to_string(),
                };
                self.create(ty, orphan, reason);
            }
        }
        Ok(())
    }

    fn push_adopt(&mut self, adopt: Change) {
        let Change::Adopt { ty, id, from, .. } = &adopt else {
            return;
        };
        let ty = ty.clone();
        self.view(&ty, *id, format!("a valid token in {from}"));
        self.keep.extend(id.map(|i| (ty.clone(), i)));
        self.apply_state(&ty, |e| adopt.update(e));
        self.plan.changes.push(adopt);
    }

    fn create(&mut self, ty: &str, orphan: Option<u64>, reason: String) {
        self.create_with(ty, orphan, reason, false);
    }

    /// Create, the reason being a warning: another host's runner is in the
    /// state.
    fn create_instead(&mut self, ty: &str, reason: String) {
        self.create_with(ty, None, reason, true);
    }

    fn create_with(&mut self, ty: &str, orphan: Option<u64>, reason: String, warn: bool) {
        let host = &self.inputs.host;
        self.plan.changes.push(Change::Create {
            ty: ty.to_string(),
            description: host.description(ty),
            tags: host.tags(ty),
            orphan,
            reason,
            warn,
        });
        self.placeholder(ty, None);
        if self.plan.types.last().is_none_or(|v| v.ty != ty) {
            self.view(ty, None, "no runner".into());
        }
    }

    /// A token GitLab will issue: the rendered config shows a placeholder.
    fn placeholder(&mut self, ty: &str, id: Option<u64>) {
        let t = format!("<new token for {ty}>");
        self.apply_state(ty, |e| {
            e.token = Some(Secret::new(t));
            e.id = id;
            e.token_expires_at = None;
            e.token_obtained_at = None;
        });
    }

    fn apply_state(&mut self, ty: &str, f: impl FnOnce(&mut Entry)) {
        if let Some(e) = self.state.entries.get_mut(ty) {
            f(e);
        }
    }

    /// This host's runners of type `ty` in the listing, oldest first.
    fn mine(&self, ty: &str) -> Vec<RunnerDetails> {
        let host = &self.inputs.host;
        let mut mine: Vec<RunnerDetails> = self
            .obs
            .listed
            .iter()
            .filter_map(|id| self.obs.runner(*id))
            .filter(|d| {
                host.owned_type(d.description.as_deref().unwrap_or(""), &d.tag_list)
                    .as_deref()
                    == Some(ty)
            })
            .cloned()
            .collect();
        mine.sort_by_key(|d| d.id);
        mine
    }

    /// Stateless: GitLab is the source of truth. Per type: keep the runner
    /// whose token this host holds (else the newest), delete the others,
    /// reset its token by id when none is held, create one when there is
    /// none.
    fn stateless(&mut self) -> Result<()> {
        let obs = self.obs;
        // a listed runner whose details cannot be read may be this host's:
        // creating one in its place could leave two
        for id in &obs.listed {
            if let Some(Details::Unreadable { kind, message }) = obs.details.get(id) {
                return Err(Error::new(
                    *kind,
                    format!(
                        "cannot tell whether listed runner {id} is this host's, so nothing is created or deleted: {message}"
                    ),
                ));
            }
        }
        let valid: Vec<(u64, &Secret, Option<i64>, Option<i64>)> = obs
            .held
            .iter()
            .filter_map(|(r, v)| match v {
                // before 15.10 verify names no runner: config.toml's `id`
                // (a template that fills `{type.id}`) does
                Verified::Valid { id, expires_at } => {
                    Some(((*id).or(r.id)?, &r.token, *expires_at, r.token_obtained_at))
                }
                _ => None,
            })
            .collect();
        let types: Vec<String> = self.inputs.state.entries.keys().cloned().collect();
        let mut start = self.inputs.state.clone();
        for ty in &types {
            let mine = self.mine(ty);
            let keep = mine
                .iter()
                .find(|d| valid.iter().any(|v| v.0 == d.id))
                .or(mine.last())
                .map(|d| d.id);
            for d in mine.iter().filter(|d| Some(d.id) != keep) {
                self.plan.changes.push(Change::Delete {
                    id: d.id,
                    description: d.description.clone().unwrap_or_default(),
                    reason: format!(
                        "extra runners of a type this host already has (keeping runner {})",
                        keep.unwrap_or(0)
                    ),
                });
            }
            let Some(id) = keep else {
                self.view(ty, None, "no runner in GitLab".into());
                self.create(
                    ty,
                    None,
                    "GitLab holds no runner of this type for this host".into(),
                );
                continue;
            };
            match valid.iter().find(|v| v.0 == id) {
                Some((_, token, expires_at, obtained)) => {
                    let observed = Observed::Valid {
                        token: (*token).clone(),
                        id: Some(id),
                        expires_at: *expires_at,
                        obtained_at: obtained.or(Some(obs.now)),
                    };
                    self.view(ty, Some(id), "this host holds its token".into());
                    let entry = Entry {
                        id: Some(id),
                        token: Some((*token).clone()),
                        token_expires_at: *expires_at,
                        token_obtained_at: obtained.or(Some(obs.now)),
                        ..Entry::default()
                    };
                    self.state.entries.insert(ty.clone(), entry.clone());
                    start.entries.insert(ty.clone(), entry.clone());
                    let action = decide(
                        &entry,
                        &observed,
                        obs.now,
                        self.s.rotate_before.as_secs() as i64,
                        true,
                    );
                    if matches!(action, Action::Rotate { .. }) {
                        self.action(ty, &entry, observed, action)?;
                    } else {
                        self.keep.push((ty.clone(), id));
                    }
                }
                None => {
                    self.view(ty, Some(id), "this host holds no valid token for it".into());
                    start.entries.insert(
                        ty.clone(),
                        Entry {
                            id: Some(id),
                            ..Entry::default()
                        },
                    );
                    self.keep.push((ty.clone(), id));
                    self.placeholder(ty, Some(id));
                    self.plan.changes.push(Change::Heal {
                        ty: ty.clone(),
                        id,
                        reason: "this host holds no valid token for it".into(),
                    });
                }
            }
        }
        self.plan.start = Some(start);
        Ok(())
    }

    /// With an access token, bring each kept runner's description back to
    /// what this host registers, and the tags this host sets (tags added by
    /// hand in GitLab stay: `host::repair_tags`); only this host's runners.
    fn drift(&mut self) {
        if self.inputs.access.is_none() {
            return;
        }
        let host = &self.inputs.host;
        let mut updates = Vec::new();
        for (ty, id) in &self.keep {
            let Some(d) = self.obs.runner(*id) else {
                continue;
            };
            let have = d.description.clone().unwrap_or_default();
            if !host.owns(&have, &d.tag_list, ty) {
                continue;
            }
            let (want, tags) = (host.description(ty), host.repaired_tags(ty, &d.tag_list));
            if have == want && tags.is_none() {
                continue;
            }
            updates.push(Change::UpdateRunner {
                ty: ty.clone(),
                id: *id,
                from: (have, d.tag_list.clone()),
                to: (want, tags.unwrap_or_else(|| d.tag_list.clone())),
            });
        }
        self.plan.changes.extend(updates);
    }

    /// `--prune`: delete this host's runners (ownership rule) that the plan
    /// does not keep.
    fn prune(&mut self) {
        let host = &self.inputs.host;
        let held: Vec<u64> = self
            .inputs
            .state
            .entries
            .values()
            .filter_map(|e| e.id)
            .chain(self.keep.iter().map(|(_, id)| *id))
            .collect();
        let deleting: Vec<u64> = self.deleting();
        let doomed: Vec<Change> = self
            .obs
            .listed
            .iter()
            .filter(|id| !held.contains(id) && !deleting.contains(id))
            .filter_map(|id| self.obs.runner(*id))
            .filter(|d| {
                host.owned_type(d.description.as_deref().unwrap_or(""), &d.tag_list)
                    .is_some()
            })
            .map(|d| Change::Delete {
                id: d.id,
                description: d.description.clone().unwrap_or_default(),
                reason: "not configured on this host (--prune)".into(),
            })
            .collect();
        self.plan.changes.extend(doomed);
    }

    fn deleting(&self) -> Vec<u64> {
        self.plan
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Delete { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }

    /// Never more than `--max-delete` deletions in one run.
    fn budget(&self) -> Result<()> {
        let ids = self.deleting();
        if ids.len() <= self.s.max_delete {
            return Ok(());
        }
        let shown: Vec<String> = ids.iter().map(u64::to_string).collect();
        Err(Error::config(format!(
            "{} runners of {} would be deleted (ids {}), more than --max-delete {}; none deleted: check them in GitLab, then raise --max-delete",
            ids.len(),
            self.inputs.host.hostname,
            shown.join(", "),
            self.s.max_delete
        )))
    }

    /// `config.toml` as the plan would leave it (new tokens as
    /// placeholders), when its bytes would change.
    fn config(&self) -> Result<Option<ConfigChange>> {
        let rendered = render(self.s, self.inputs, &self.state)?;
        let old = self.obs.old_config.as_deref();
        if old == Some(rendered.as_bytes()) {
            return Ok(None);
        }
        let old_text = String::from_utf8_lossy(old.unwrap_or_default()).into_owned();
        let mut secrets: Vec<&str> = self
            .inputs
            .state
            .entries
            .values()
            .chain(self.state.entries.values())
            .chain(self.inputs.shown.values())
            .filter_map(|e| e.token.as_ref())
            .map(Secret::expose)
            .filter(|t| !t.starts_with("<new token for "))
            .collect();
        secrets.extend(self.obs.existing.iter().map(|r| r.token.expose()));
        secrets.extend(self.obs.leftovers.iter().map(|l| l.token.expose()));
        let masked = |t: &str| mask_tokens(t, &secrets);
        let diff = crate::diff::lines(&masked(&old_text), &masked(&rendered), 3);
        Ok(Some(ConfigChange {
            create: old.is_none(),
            diff,
        }))
    }
}

/// A description or tags from GitLab, as a person sees them.
fn shown(text: &str) -> String {
    crate::untrusted::shown(text)
}

fn owns(host: &crate::host::Host, d: &RunnerDetails, ty: &str) -> bool {
    host.owns(d.description.as_deref().unwrap_or(""), &d.tag_list, ty)
}

/// `config.toml` from the template and `state`, checked as TOML.
pub fn render(s: &Settings, inputs: &Inputs, state: &State) -> Result<String> {
    let values = |ty: &str| {
        Some(
            state
                .entries
                .get(ty)
                .or_else(|| inputs.shown.get(ty))?
                .values(),
        )
    };
    let rendered = inputs.template.render(&inputs.host.hostname, values)?;
    let table = super::inputs::parse_rendered(s, &rendered)?;
    inputs
        .template
        .check_shape(&inputs.host.hostname, &table, values)?;
    Ok(rendered)
}

fn describe_observed(obs: &Observed) -> String {
    match obs {
        Observed::Missing => "no token".to_string(),
        Observed::Invalid => "token rejected by GitLab".to_string(),
        Observed::Valid { expires_at, .. } => format!(
            "token valid{}",
            expires_at.map_or(", never expires".into(), |e| format!(
                " until {}",
                clock::format(e)
            ))
        ),
    }
}

impl Change {
    /// What a change that needs no request (`Record`, `Adopt`) does to its
    /// runner type's state entry; the plan's picture of the state and
    /// `apply` both go through it.
    pub fn update(&self, e: &mut Entry) {
        match self {
            Change::Record {
                id,
                expires_at,
                obtained_at,
                ..
            } => {
                e.id = id.or(e.id);
                e.token_expires_at = *expires_at;
                e.token_obtained_at = *obtained_at;
            }
            Change::Adopt {
                id,
                token,
                expires_at,
                obtained_at,
                ..
            } => {
                e.id = id.or(e.id);
                e.token = Some(token.clone());
                e.token_expires_at = *expires_at;
                e.token_obtained_at = *obtained_at;
                e.create_pending_since = None;
            }
            _ => {}
        }
    }

    /// The runner type it is about, if any.
    pub fn ty(&self) -> Option<&str> {
        match self {
            Change::Record { ty, .. }
            | Change::Adopt { ty, .. }
            | Change::Rotate { ty, .. }
            | Change::Heal { ty, .. }
            | Change::Create { ty, .. }
            | Change::UpdateRunner { ty, .. }
            | Change::DeleteByToken { ty, .. }
            | Change::ClearPending { ty, .. }
            | Change::Clear { ty } => Some(ty),
            Change::Delete { .. } | Change::RemoveFile { .. } => None,
        }
    }

    /// Its name in `plan --json`.
    pub fn action(&self) -> &'static str {
        match self {
            Change::Record { .. } => "record",
            Change::Adopt { .. } => "adopt",
            Change::Rotate { .. } => "rotate",
            Change::Heal { .. } => "heal",
            Change::Create { .. } => "create",
            Change::UpdateRunner { .. } => "update",
            Change::Delete { .. } | Change::DeleteByToken { .. } => "delete",
            Change::Clear { .. } => "clear",
            Change::ClearPending { .. } => "clear_pending",
            Change::RemoveFile { .. } => "remove_file",
        }
    }

    pub fn runner_id(&self) -> Option<u64> {
        match self {
            Change::Record { id, .. } | Change::Adopt { id, .. } | Change::Rotate { id, .. } => *id,
            Change::Heal { id, .. }
            | Change::UpdateRunner { id, .. }
            | Change::Delete { id, .. } => Some(*id),
            Change::Create { orphan, .. } => *orphan,
            Change::DeleteByToken { .. }
            | Change::Clear { .. }
            | Change::ClearPending { .. }
            | Change::RemoveFile { .. } => None,
        }
    }

    /// What it does and why, in words (tokens never shown).
    pub fn reason(&self) -> String {
        match self {
            Change::Record { .. } => "record the token's id and expiry in the state".into(),
            Change::Adopt { from, .. } => format!("a valid token in {from}"),
            Change::Rotate { reason, .. }
            | Change::Heal { reason, .. }
            | Change::Create { reason, .. } => reason.clone(),
            Change::UpdateRunner { from, to, .. } => format!(
                "'{}' [{}] -> '{}' [{}]",
                shown(&from.0),
                shown(&from.1.join(",")),
                to.0,
                to.1.join(",")
            ),
            Change::Delete { reason, .. } => reason.clone(),
            Change::DeleteByToken { .. } => "unregister (with the runner's own token)".into(),
            Change::Clear { .. } => "unregister: clear the state entry".into(),
            Change::ClearPending { reason, .. } if !reason.is_empty() => reason.clone(),
            Change::ClearPending { .. } => "the create it records was looked for".into(),
            Change::RemoveFile { .. } => "left by a run that was stopped".into(),
        }
    }

    /// The `plan` line.
    pub fn line(&self) -> String {
        match self {
            Change::Record { ty, .. } => {
                format!("{ty}: would record the token's expiry in runner-data.json")
            }
            Change::Adopt { ty, from, .. } => {
                format!("{ty}: would adopt the valid token in {from}")
            }
            Change::Rotate { ty, id, reason, .. } => {
                format!("{ty} ({}): would rotate the token: {reason}", shown_id(*id))
            }
            Change::Heal { ty, id, .. } => format!(
                "{ty} (runner {id}): would heal: reset runner {id}'s token with the access token"
            ),
            Change::Create {
                ty,
                description,
                tags,
                orphan,
                ..
            } => format!(
                "{ty}: would create runner '{description}' tagged {}{}",
                tags.join(","),
                orphan.map_or(String::new(), |o| format!(
                    " (old runner {o} may remain in GitLab)"
                ))
            ),
            Change::UpdateRunner { ty, id, .. } => format!(
                "{ty} (runner {id}): would update description and tags on GitLab: {}",
                self.reason()
            ),
            Change::Delete {
                id,
                description,
                reason,
            } => format!(
                "would delete runner {id} ('{}'): {reason}",
                shown(description)
            ),
            Change::DeleteByToken { ty, .. } => {
                format!("{ty}: would delete the runner with its own token")
            }
            Change::Clear { ty } => format!("{ty}: would clear its state entry"),
            Change::ClearPending { ty, .. } => {
                format!(
                    "{ty}: would clear its pending-create record: {}",
                    self.reason()
                )
            }
            Change::RemoveFile { path } => format!(
                "would remove {} (left by a run that was stopped)",
                path.display()
            ),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "action": self.action(),
            "type": self.ty(),
            "runner_id": self.runner_id(),
            "reason": self.reason(),
        });
        match self {
            Change::Create {
                description,
                tags,
                orphan,
                ..
            } => {
                v["description"] = description.clone().into();
                v["tags"] = tags.clone().into();
                v["orphan"] = json!(orphan);
            }
            Change::UpdateRunner { from, to, .. } => {
                v["from"] = json!({"description": from.0, "tags": from.1});
                v["to"] = json!({"description": to.0, "tags": to.1});
            }
            Change::RemoveFile { path } => v["path"] = path.display().to_string().into(),
            _ => {}
        }
        v
    }
}

fn shown_id(id: Option<u64>) -> String {
    id.map_or("no id".to_string(), |i| format!("runner {i}"))
}

impl Plan {
    /// The text `plan` prints: a line per runner type (what GitLab said,
    /// what would happen), the other changes, and the `config.toml` diff.
    pub fn text(&self, config: &std::path::Path, api_url: &str) -> String {
        let mut out = format!("plan for {} against {api_url}:\n", config.display());
        let mut said = Vec::new();
        for t in &self.types {
            let first = self.changes.iter().enumerate().find(|(_, c)| {
                c.ty() == Some(t.ty.as_str()) && !matches!(c, Change::UpdateRunner { .. })
            });
            let what = match first {
                Some((i, c)) => {
                    said.push(i);
                    c.line()
                        .split_once(": ")
                        .map(|(_, rest)| rest.to_string())
                        .unwrap_or_default()
                }
                None => "nothing to do".into(),
            };
            out.push_str(&format!(
                "{} ({}): {}; {what}\n",
                t.ty,
                shown_id(t.id),
                t.observed
            ));
        }
        for (i, c) in self.changes.iter().enumerate() {
            if !said.contains(&i) {
                out.push_str(&c.line());
                out.push('\n');
            }
        }
        if let Some(c) = &self.config {
            out.push_str(&format!(
                "would {} {}:\n",
                if c.create { "create" } else { "rewrite" },
                config.display()
            ));
            for l in &c.diff {
                out.push_str(&format!("  {l}\n"));
            }
        }
        out
    }

    /// `plan --json` (documented in the README).
    pub fn json(&self, config: &std::path::Path, api_url: &str) -> Value {
        json!({
            "config": config.display().to_string(),
            "api_url": api_url,
            "pending": self.pending(),
            "runners": self.types.iter().map(|t| json!({
                "type": t.ty,
                "runner_id": t.id,
                "observed": t.observed,
            })).collect::<Vec<_>>(),
            "changes": self.changes.iter().map(Change::to_json).collect::<Vec<_>>(),
            "config_diff": self.config.as_ref().map(|c| json!({
                "action": if c.create { "create" } else { "rewrite" },
                "lines": c.diff,
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;
    use crate::host::Host;
    use crate::state::ConfigRunner;
    use crate::template::Template;

    const NOW: i64 = 1_800_000_000;
    const TEMPLATE: &str =
        "[[runners]]\n  token = \"{shell}\"\n[[runners]]\n  token = \"{batch}\"\n";

    fn settings(args: &[&str]) -> Settings {
        let mut argv = vec![
            "--api-url",
            "https://gitlab.example.com",
            "-p",
            "/nonexistent",
        ];
        argv.extend(args);
        let a = crate::cli::parse(argv.iter().map(Into::into).collect(), &|_| None).unwrap();
        Settings::from_args(&a, None).unwrap()
    }

    fn inputs(state: &str, pat: bool) -> Inputs {
        Inputs {
            template: Template::parse(TEMPLATE, "t").unwrap(),
            state: State::parse(state.as_bytes()).unwrap(),
            host: Host {
                hostname: "node12".into(),
                scheduler: None,
                extra_tags: Vec::new(),
                auto: Default::default(),
            },
            admin: Some((
                Secret::new("GR1348941aaaaaaaaaaaaaaaaaaaa"),
                "admin-token".into(),
            )),
            access: pat.then(|| Secret::new("glpat-bbbbbbbbbbbbbbbbbbbb")),
            access_path: None,
            system_id: None,
            template_len: TEMPLATE.len(),
            others: Default::default(),
            shown: Default::default(),
        }
    }

    fn runner(id: u64, description: &str, tags: &[&str]) -> Details {
        Details::Found(
            serde_json::from_value(json!({"id": id, "description": description, "tag_list": tags}))
                .unwrap(),
        )
    }

    fn valid(id: u64, expires: Option<i64>) -> Verified {
        Verified::Valid {
            id: Some(id),
            expires_at: expires,
        }
    }

    fn obs() -> Observation {
        Observation {
            now: NOW,
            ..Observation::default()
        }
    }

    /// (action, type) of each change, without the config diff.
    fn actions(p: &Plan) -> Vec<(&'static str, Option<String>)> {
        p.changes
            .iter()
            .map(|c| (c.action(), c.ty().map(String::from)))
            .collect()
    }

    fn a(action: &'static str, ty: &str) -> (&'static str, Option<String>) {
        (action, Some(ty.to_string()))
    }

    const BOTH: &str = r#"{"shell": {"id": 101, "token": "glrt-shellshellshellshell", "token_obtained_at": "2027-01-01T00:00:00Z"},
                          "batch": {"id": 100, "token": "glrt-batchbatchbatchbatch", "token_obtained_at": "2027-01-01T00:00:00Z"}}"#;

    fn both_valid() -> Observation {
        let mut o = obs();
        o.verified.insert("shell".into(), valid(101, None));
        o.verified.insert("batch".into(), valid(100, None));
        o
    }

    #[test]
    fn the_plan_of_each_observation() {
        type Case = (
            &'static str,
            &'static str,
            bool,
            Vec<&'static str>,
            Box<dyn Fn(&mut Observation)>,
            Vec<(&'static str, Option<String>)>,
        );
        let cases: Vec<Case> = vec![
            (
                "first run",
                "{\"shell\": {}, \"batch\": {}}",
                false,
                vec![],
                Box::new(|_| {}),
                vec![a("create", "batch"), a("create", "shell")],
            ),
            (
                "nothing to do",
                BOTH,
                false,
                vec![],
                Box::new(|_| {}),
                vec![],
            ),
            (
                "an invalid token without an access token: create, the orphan named",
                BOTH,
                false,
                vec![],
                Box::new(|o| {
                    o.verified.insert("shell".into(), Verified::Invalid);
                }),
                vec![a("create", "shell")],
            ),
            (
                "an invalid token of this host's runner: heal",
                BOTH,
                true,
                vec![],
                Box::new(|o| {
                    o.verified.insert("shell".into(), Verified::Invalid);
                    o.details.insert(
                        101,
                        runner(101, "node12-shell", &["node12", "node", "shell"]),
                    );
                    o.details.insert(
                        100,
                        runner(100, "node12-batch", &["node12", "node", "batch"]),
                    );
                }),
                vec![a("heal", "shell")],
            ),
            (
                "an invalid token of a runner gone from GitLab: create, no doomed heal",
                BOTH,
                true,
                vec![],
                Box::new(|o| {
                    o.verified.insert("shell".into(), Verified::Invalid);
                    o.details.insert(101, Details::Gone);
                    o.details.insert(
                        100,
                        runner(100, "node12-batch", &["node12", "node", "batch"]),
                    );
                }),
                vec![a("create", "shell")],
            ),
            (
                "a copied state: another host's runner is left alone",
                BOTH,
                true,
                vec![],
                Box::new(|o| {
                    o.details.insert(
                        101,
                        runner(101, "login42-shell", &["login42", "login", "shell"]),
                    );
                    o.details.insert(
                        100,
                        runner(100, "node12-batch", &["node12", "node", "batch"]),
                    );
                }),
                vec![a("create", "shell")],
            ),
            (
                "drift: tags put back",
                BOTH,
                true,
                vec![],
                Box::new(|o| {
                    o.details.insert(
                        101,
                        runner(101, "node12-shell", &["node12", "shell", "oops"]),
                    );
                    o.details.insert(
                        100,
                        runner(100, "node12-batch", &["node12", "node", "batch"]),
                    );
                }),
                vec![a("update", "shell")],
            ),
            (
                "a token gitlab-runner rotated is adopted",
                BOTH,
                false,
                vec![],
                Box::new(|o| {
                    o.verified.insert("shell".into(), Verified::Invalid);
                    o.unknown.push((
                        ConfigRunner {
                            token: Secret::new("glrt-rotatedrotatedrotated"),
                            id: None,
                            token_obtained_at: None,
                            token_expires_at: None,
                            url: None,
                        },
                        valid(101, None),
                    ));
                }),
                vec![a("adopt", "shell")],
            ),
            (
                "past 75% of its lifetime: rotate",
                BOTH,
                false,
                vec![],
                Box::new(|o| {
                    o.verified
                        .insert("shell".into(), valid(101, Some(NOW + 10)));
                }),
                vec![a("rotate", "shell")],
            ),
            (
                "prune: this host's unconfigured runner, never another host's",
                BOTH,
                true,
                vec!["--prune"],
                Box::new(|o| {
                    o.details.insert(
                        101,
                        runner(101, "node12-shell", &["node12", "node", "shell"]),
                    );
                    o.details.insert(
                        100,
                        runner(100, "node12-batch", &["node12", "node", "batch"]),
                    );
                    o.listed = vec![100, 101, 102, 103];
                    o.details
                        .insert(102, runner(102, "node12-gpu", &["node12", "gpu"]));
                    o.details.insert(
                        103,
                        runner(103, "node123-gpu", &["node123", "node12", "gpu"]),
                    );
                }),
                vec![("delete", None)],
            ),
        ];
        for (name, state, pat, args, tweak, want) in cases {
            let s = settings(&args);
            let i = inputs(state, pat);
            let mut o = if state == BOTH { both_valid() } else { obs() };
            tweak(&mut o);
            let p = plan(&s, &i, &o).unwrap_or_else(|e| panic!("{name}: {e}"));
            let got: Vec<_> = actions(&p)
                .into_iter()
                .filter(|(a, _)| *a != "record")
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn the_plan_refuses_what_it_cannot_check() {
        // --max-delete
        let s = settings(&["--prune", "--max-delete", "1"]);
        let i = inputs(BOTH, true);
        let mut o = both_valid();
        o.details.insert(
            101,
            runner(101, "node12-shell", &["node12", "node", "shell"]),
        );
        o.details.insert(
            100,
            runner(100, "node12-batch", &["node12", "node", "batch"]),
        );
        o.listed = vec![102, 103];
        o.details
            .insert(102, runner(102, "node12-gpu", &["node12", "gpu"]));
        o.details
            .insert(103, runner(103, "node12-cuda", &["node12", "cuda"]));
        let e = plan(&s, &i, &o).unwrap_err();
        assert_eq!(e.kind(), Kind::Config);
        assert!(
            e.to_string()
                .contains("more than --max-delete 1; none deleted"),
            "{e}"
        );
        // a rotation due on a runner whose owner GitLab did not say
        let s = settings(&[]);
        let mut o = both_valid();
        o.verified
            .insert("shell".into(), valid(101, Some(NOW + 10)));
        o.details.insert(
            101,
            Details::Unreadable {
                kind: Kind::Denied,
                message: "GET /runners/101: 403".into(),
            },
        );
        o.details.insert(
            100,
            runner(100, "node12-batch", &["node12", "node", "batch"]),
        );
        let e = plan(&s, &i, &o).unwrap_err();
        assert_eq!(e.kind(), Kind::Denied);
        assert!(
            e.to_string()
                .contains("cannot tell whether shell runner 101 is this host's"),
            "{e}"
        );
    }

    #[test]
    fn stateless_keeps_the_held_runner_and_deletes_the_pile_up() {
        let s = settings(&["--stateless"]);
        let i = inputs("{\"shell\": {}, \"batch\": {}}", true);
        let mut o = obs();
        o.listed = vec![100, 101, 102];
        o.details.insert(
            100,
            runner(100, "node12-shell", &["node12", "node", "shell"]),
        );
        o.details.insert(
            101,
            runner(101, "node12-shell", &["node12", "node", "shell"]),
        );
        o.details.insert(
            102,
            runner(102, "node12-batch", &["node12", "node", "batch"]),
        );
        let held = ConfigRunner {
            token: Secret::new("glrt-heldheldheldheldheld"),
            id: None,
            token_obtained_at: None,
            token_expires_at: None,
            url: None,
        };
        o.held.push((held, valid(100, None)));
        let p = plan(&s, &i, &o).unwrap();
        assert_eq!(actions(&p), vec![a("heal", "batch"), ("delete", None)]);
        assert_eq!(
            p.changes[1].runner_id(),
            Some(101),
            "the newer one, whose token nobody holds"
        );
        let start = p.start.unwrap();
        assert_eq!(start.entries["shell"].id, Some(100));
        assert_eq!(start.entries["batch"].id, Some(102));
    }
}
