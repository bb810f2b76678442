// SPDX-License-Identifier: MIT
//! Applying a plan: the only place that writes, to GitLab and to disk, in
//! the plan's order. The state is persisted after every token GitLab
//! issues, before the next call; what GitLab answers at run time (a refused
//! rotation, a runner gone, a lost answer) is handled here; `config.toml`
//! is rendered from the final state and replaced only when its bytes
//! change.

use super::Inputs;
use super::plan::{Change, Plan, Source, render};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::gitlab::{Client, IssuedToken, ResetById};
use crate::settings::Settings;
use crate::state::Entry;

/// What a run did, for the summary line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub verified: usize,
    pub created: usize,
    pub rotated: usize,
    pub healed: usize,
    pub adopted: usize,
    pub took_over: usize,
    pub updated: usize,
    pub deleted: usize,
}

impl Tally {
    /// Each count by its name (`taken_over`: the metrics' `action` label).
    pub fn counts(&self) -> [(&'static str, usize); 8] {
        [
            ("verified", self.verified),
            ("created", self.created),
            ("rotated", self.rotated),
            ("healed", self.healed),
            ("adopted", self.adopted),
            ("taken_over", self.took_over),
            ("updated", self.updated),
            ("deleted", self.deleted),
        ]
    }

    /// `2 created, 1 healed`, or `nothing to do`.
    pub fn summary(&self) -> String {
        let done: Vec<String> = self
            .counts()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(what, n)| format!("{n} {}", what.replace('_', " ")))
            .collect();
        if done.is_empty() {
            "nothing to do".into()
        } else {
            done.join(", ")
        }
    }
}

/// What applying a plan did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    pub tally: Tally,
    /// Whether `config.toml` was written.
    pub wrote: bool,
    /// Runner ids that may remain in GitLab, deleted by nobody (unregister).
    pub left: Vec<String>,
    /// Each runner type as the state ends: a token it holds is one GitLab
    /// verified or just issued.
    pub runners: Vec<crate::metrics::Runner>,
}

impl Applied {
    /// Add what another GitLab's apply did.
    pub fn merge(&mut self, other: Applied) {
        let (t, o) = (&mut self.tally, other.tally);
        t.verified += o.verified;
        t.created += o.created;
        t.rotated += o.rotated;
        t.healed += o.healed;
        t.adopted += o.adopted;
        t.took_over += o.took_over;
        t.updated += o.updated;
        t.deleted += o.deleted;
        self.wrote |= other.wrote;
        self.left.extend(other.left);
        self.runners.extend(other.runners);
    }
}

pub(super) struct Applier<'a> {
    pub(super) s: &'a Settings,
    pub(super) client: &'a Client,
    pub(super) inputs: Inputs,
    pub(super) now: i64,
    pub(super) tally: Tally,
    /// Runner ids deleted in this run.
    pub(super) deleting: Vec<u64>,
    /// Whether the directories were proven writable (`ensure_persistable`).
    pub(super) probed: bool,
    /// Stateless: the tokens GitLab issued in this run, kept in a recovery
    /// file until `config.toml` holds them.
    issued: Vec<crate::secret::Secret>,
    /// Types created again after a lost answer: the pending record stays,
    /// for the next run to delete a create that landed late.
    pub(super) sweep: Vec<String>,
    left: Vec<String>,
}

/// Apply `plan`; `verified` is how many tokens the observation verified.
pub fn apply(
    s: &Settings,
    client: &Client,
    mut inputs: Inputs,
    plan: Plan,
    now: i64,
    verified: usize,
    write_config: bool,
) -> Result<Applied> {
    if let Some(start) = plan.start {
        inputs.state = start;
    }
    let mut a = Applier {
        s,
        client,
        inputs,
        now,
        tally: Tally {
            verified,
            ..Tally::default()
        },
        deleting: Vec::new(),
        probed: false,
        sweep: Vec::new(),
        issued: Vec::new(),
        left: Vec::new(),
    };
    for change in plan.changes {
        a.change(change)?;
    }
    let wrote = write_config && a.write_config()?;
    if !a.issued.is_empty() {
        fsutil::remove(&fsutil::issued_path(&s.config_path))?;
    }
    let runners = a
        .inputs
        .state
        .entries
        .iter()
        .map(|(ty, e)| crate::metrics::Runner {
            ty: ty.clone(),
            id: e.id,
            valid: e.token.is_some(),
            expires_at: e.token_expires_at,
            gitlab: None,
        })
        .collect();
    Ok(Applied {
        tally: a.tally,
        wrote,
        left: a.left,
        runners,
    })
}

impl Applier<'_> {
    fn change(&mut self, change: Change) -> Result<()> {
        if let Change::Record { ty, .. } | Change::Adopt { ty, .. } = &change {
            let ty = ty.clone();
            change.update(self.entry(&ty));
            self.save_state()?;
        }
        match change {
            Change::Record { .. } => Ok(()),
            Change::Adopt { ty, id, from, .. } => {
                self.tally.adopted += 1;
                let id = id.map_or("?".into(), |i| i.to_string());
                match from {
                    Source::Config(_) => {
                        log::info!("adopted the token gitlab-runner rotated for {ty} runner {id}")
                    }
                    Source::Leftover(path) => log::warn!(
                        "recovered the {ty} runner {id} token an earlier run was stopped before saving (from {})",
                        path.display()
                    ),
                }
                Ok(())
            }
            Change::Rotate {
                ty,
                id,
                token,
                reason,
            } => match self.rotate(&token, id)? {
                Some(new) => {
                    self.store(&ty, new)?;
                    self.tally.rotated += 1;
                    log::info!(
                        "rotated {ty} runner {} token ({reason})",
                        self.entry(&ty).id.map_or("?".into(), |i| i.to_string())
                    );
                    Ok(())
                }
                None => {
                    log::warn!(
                        "{ty} runner: GitLab refused to rotate the token; treating it as invalid"
                    );
                    match (self.inputs.access.is_some(), id) {
                        (true, Some(id)) => self.heal(&ty, id),
                        _ => self.create_and_store(&ty, id),
                    }
                }
            },
            Change::Heal { ty, id, .. } => self.heal(&ty, id),
            Change::Create {
                ty,
                orphan,
                reason,
                warn,
                ..
            } => {
                if warn {
                    log::warn!("{reason}");
                } else {
                    log::info!("{ty}: {reason}");
                }
                self.create_and_store(&ty, orphan)
            }
            Change::UpdateRunner { ty, id, from, to } => {
                let pat = self.access()?;
                let change = format!(
                    "'{}' [{}] -> '{}' [{}]",
                    from.0,
                    from.1.join(","),
                    to.0,
                    to.1.join(",")
                );
                match self.client.update(&pat, id, &to.0, &to.1) {
                    Ok(()) => {
                        self.tally.updated += 1;
                        log::info!("updated {ty} runner {id} on GitLab: {change}");
                    }
                    // the config is good already: only warn
                    Err(e) => log::warn!("cannot update {ty} runner {id}: {e}"),
                }
                Ok(())
            }
            Change::Delete {
                id,
                description,
                reason,
            } => {
                let pat = self.access()?;
                self.deleting.push(id);
                let description = crate::untrusted::shown(&description);
                if self.client.delete(&pat, id)? {
                    self.tally.deleted += 1;
                    log::info!("deleted runner {id} ('{description}'): {reason}");
                } else {
                    log::warn!("runner {id} ('{description}') was already gone from GitLab");
                    self.left.push(id.to_string());
                }
                Ok(())
            }
            Change::DeleteByToken { ty, token } => {
                if self.client.delete_by_token(&token)? {
                    self.tally.deleted += 1;
                    log::info!("deleted the {ty} runner with its own token");
                } else {
                    log::warn!(
                        "{ty} runner: GitLab no longer knows its token; it may remain in GitLab"
                    );
                    self.left.push(ty);
                }
                Ok(())
            }
            Change::ClearPending { ty, reason } => {
                if !reason.is_empty() {
                    log::warn!("{reason}");
                }
                self.entry(&ty).create_pending_since = None;
                self.save_state()
            }
            Change::Clear { ty } => {
                let e = self.entry(&ty);
                let extra = std::mem::take(&mut e.extra);
                *e = Entry {
                    extra,
                    ..Entry::default()
                };
                self.save_state()
            }
            Change::RemoveFile { path } => {
                fsutil::remove(&path)?;
                log::info!("removed {}, left by a run that was stopped", path.display());
                Ok(())
            }
        }
    }

    fn access(&self) -> Result<crate::secret::Secret> {
        self.inputs
            .access
            .clone()
            .ok_or_else(|| Error::internal("a change that needs the access token"))
    }

    /// Reset `ty`'s runner `id` by id; a runner gone means create.
    fn heal(&mut self, ty: &str, id: u64) -> Result<()> {
        let pat = self.access()?;
        match self.reset_by_id(&pat, id)? {
            ResetById::Reset(new) => {
                self.store(ty, new)?;
                self.tally.healed += 1;
                log::info!("healed {ty} runner {id}: reset its token by id");
                Ok(())
            }
            ResetById::NoRunner => {
                log::info!("{ty} runner {id} no longer exists in GitLab; creating a new one");
                self.create_and_store(ty, None)
            }
            ResetById::Unsupported => {
                log::warn!(
                    "this GitLab cannot reset a runner's token by id (before 14.3); creating a new {ty} runner"
                );
                self.create_and_store(ty, Some(id))
            }
        }
    }

    fn create_and_store(&mut self, ty: &str, orphan: Option<u64>) -> Result<()> {
        // said before the create: a run killed after it still said it
        if let Some(old) = orphan {
            log::warn!(
                "creating a new {ty} runner: the old {ty} runner {old} may remain in GitLab: delete it there (an access-token in the prefix lets this tool heal runners instead)"
            );
        }
        let new = self.create_runner(ty)?;
        let id = new.id;
        let sweep = self.sweep.iter().any(|t| t == ty);
        let now = self.now;
        self.entry(ty).create_pending_since = sweep.then_some(now);
        self.store_keeping_pending(ty, new)?;
        self.tally.created += 1;
        log::info!(
            "created {ty} runner {} ({}, tags {})",
            id.map_or("?".into(), |i| i.to_string()),
            self.inputs.host.description(ty),
            self.inputs.host.tags(ty).join(",")
        );
        Ok(())
    }

    pub(super) fn entry(&mut self, ty: &str) -> &mut Entry {
        self.inputs.state.entries.entry(ty.to_string()).or_default()
    }

    /// Store a token GitLab just issued and persist it at once: the old token
    /// is already dead.
    pub(super) fn store(&mut self, ty: &str, new: IssuedToken) -> Result<()> {
        self.entry(ty).create_pending_since = None;
        self.store_keeping_pending(ty, new)
    }

    /// [`Applier::store`], leaving a pending-create record as it is.
    fn store_keeping_pending(&mut self, ty: &str, new: IssuedToken) -> Result<()> {
        let now = self.now;
        let e = self.entry(ty);
        if new.id.is_some() {
            e.id = new.id;
        }
        e.token = Some(new.token.clone());
        e.token_expires_at = new.expires_at;
        e.token_obtained_at = Some(now);
        self.save_state()?;
        if self.s.stateless {
            // no state file: a recovery file beside config.toml holds what
            // GitLab issued until config.toml does (a stop, a crash)
            self.issued.push(new.token);
            let text: String = self
                .issued
                .iter()
                .map(|t| format!("[[runners]]\n  token = \"{}\"\n", t.expose()))
                .collect();
            fsutil::write_recovery(&fsutil::issued_path(&self.s.config_path), text.as_bytes())?;
        }
        // A stop asked for while GitLab issued it ends the run here, with
        // the token safe.
        crate::signals::check("the next step")
    }

    /// Persist the state (stateful mode only).
    pub(super) fn save_state(&self) -> Result<()> {
        if self.s.stateless {
            return Ok(());
        }
        self.inputs
            .whole(&self.inputs.state)
            .save(&self.s.state_path)
    }

    /// Render and write `config.toml` when its bytes change. Whether it
    /// was written.
    fn write_config(&mut self) -> Result<bool> {
        let rendered = render(self.s, &self.inputs, &self.inputs.state)?;
        if fsutil::same_content(&self.s.config_path, rendered.as_bytes()) {
            return Ok(false);
        }
        fsutil::write_atomic(&self.s.config_path, rendered.as_bytes())?;
        log::info!("wrote {}", self.s.config_path.display());
        Ok(true)
    }
}
