// SPDX-License-Identifier: MIT
//! Calls that make GitLab issue a token (create, rotate, heal), and what to
//! do when their answer is lost: persistence proven before the first one, a
//! pending-create record in the state, and the runner GitLab may have made
//! (a ghost) found by the ownership rule and taken over by a reset by id.

use super::apply::Applier;
use super::observe::parallel;
use crate::error::{Error, Kind, Result};
use crate::fsutil;
use crate::gitlab::{IssuedToken, NewRunner, ResetById};
use crate::secret::{Secret, is_access_token};

impl Applier<'_> {
    /// Before the first call that issues a token: prove the state and config
    /// directories take a write of the files' size, so a token GitLab issues
    /// can be persisted (a full disk or a read-only directory is exit 73
    /// before anything is issued, not a lost token after).
    pub(super) fn ensure_persistable(&mut self) -> Result<()> {
        if self.probed {
            return Ok(());
        }
        let state_len = self.inputs.whole(&self.inputs.state).to_json().len() + 4096;
        let config_len = std::fs::symlink_metadata(&self.s.config_path)
            .map_or(0, |m| m.len() as usize)
            .max(self.inputs.template_len * 2)
            + 4096;
        let mut dirs = vec![(
            fsutil::dir_of(&self.s.config_path).to_path_buf(),
            config_len,
        )];
        if !self.s.stateless {
            let dir = fsutil::dir_of(&self.s.state_path).to_path_buf();
            match dirs.iter_mut().find(|(d, _)| *d == dir) {
                Some((_, n)) => *n += state_len,
                None => dirs.push((dir, state_len)),
            }
        }
        for (dir, bytes) in dirs {
            fsutil::probe_writable(&dir, bytes)?;
        }
        // and the file that will hold the token can be replaced (not
        // bind-mounted, not immutable): replace it with itself
        let holder = if self.s.stateless {
            &self.s.config_path
        } else {
            &self.s.state_path
        };
        if let Some(bytes) = crate::trust::read(holder, crate::trust::Class::Input)? {
            fsutil::write_atomic(holder, &bytes)
                .map_err(|e| e.context("cannot persist a new token, so none was asked for"))?;
        }
        self.probed = true;
        Ok(())
    }

    /// Create the `ty` runner. A pending record goes into the state first,
    /// so a run killed while the create is in flight leaves a trace. When
    /// the answer is lost: with an access token, take over the runner
    /// GitLab made; else repeat once and name the runner that may remain.
    /// Once an answer was lost, the record stays whatever happens next (a
    /// failed lookup, a stop), so that the next run looks again.
    pub(super) fn create_runner(&mut self, ty: &str) -> Result<IssuedToken> {
        self.ensure_persistable()?;
        if self.inputs.state.entries[ty].create_pending_since.is_some() {
            if let Some(found) = self.take_over_ghost(ty)? {
                log::warn!(
                    "a create of the {ty} runner was in flight when an earlier run stopped: GitLab made runner {}; took it over",
                    found.id.unwrap_or(0)
                );
                self.tally.took_over += 1;
                return Ok(found);
            }
            if self.inputs.access.is_none() {
                log::warn!(
                    "a create of the {ty} runner was in flight when an earlier run stopped: a runner '{}' may remain in GitLab (an access-token lets this tool find and take it over)",
                    self.inputs.host.description(ty)
                );
            }
        }
        if self.inputs.admin.is_none() {
            return self.create(ty);
        }
        let mut new_file = false;
        if !self.s.stateless {
            new_file = !self.s.state_path.exists();
            self.entry(ty).create_pending_since = Some(self.now);
            self.save_state()?;
        }
        let mut lost = false;
        let result = self.create_or_recover(ty, &mut lost);
        if let Err(e) = &result
            && !lost
            && !matches!(e.kind(), Kind::Ambiguous | Kind::Data)
            && !self.s.stateless
        {
            // GitLab refused, or never got it: no runner was made.
            self.entry(ty).create_pending_since = None;
            if new_file
                && self
                    .inputs
                    .whole(&self.inputs.state)
                    .entries
                    .values()
                    .all(|e| e == &Default::default())
            {
                fsutil::remove(&self.s.state_path)?;
            } else {
                self.save_state()?;
            }
        }
        result
    }

    fn create_or_recover(&mut self, ty: &str, lost: &mut bool) -> Result<IssuedToken> {
        match self.create(ty) {
            Err(e) if e.kind() == Kind::Ambiguous => {
                *lost = true;
                log::warn!("{e}; looking for the runner GitLab may have made");
                if let Some(found) = self.take_over_ghost(ty)? {
                    log::warn!(
                        "GitLab made runner {} before the answer was lost; took it over",
                        found.id.unwrap_or(0)
                    );
                    self.tally.took_over += 1;
                    return Ok(found);
                }
                if self.inputs.access.is_some() {
                    log::warn!(
                        "GitLab shows no {ty} runner from that create yet, so creating it again; the next run looks once more and deletes a late one"
                    );
                } else {
                    log::warn!(
                        "creating the {ty} runner again: runner '{}' may remain in GitLab from the first try",
                        self.inputs.host.description(ty)
                    );
                }
                // the record stays after this create: the next run sweeps
                self.sweep.push(ty.to_string());
                self.create(ty)
            }
            other => other,
        }
    }

    /// The newest runner of type `ty` that is this host's (ownership rule)
    /// and not in the state, taken over with a reset by id; `None` without
    /// an access token or when there is none. (GitLab's ids only grow, so
    /// no clock is compared.)
    pub(super) fn take_over_ghost(&mut self, ty: &str) -> Result<Option<IssuedToken>> {
        let Some(pat) = self.inputs.access.clone() else {
            return Ok(None);
        };
        let known: Vec<u64> = self
            .inputs
            .state
            .entries
            .values()
            .filter_map(|e| e.id)
            .chain(self.deleting.iter().copied())
            .collect();
        let host = &self.inputs.host;
        let listed: Vec<u64> = self
            .client
            .list_tagged(
                &pat,
                self.s.scope,
                std::slice::from_ref(&host.hostname),
                |d| host.could_own(d),
            )?
            .into_iter()
            .filter(|id| !known.contains(id))
            .collect();
        super::observe::check_candidates(&listed)?;
        let details = parallel(&listed, |id| self.client.runner(&pat, *id))?;
        let mut ghost = None;
        for (id, d) in listed.iter().zip(details) {
            let Some(d) = d? else { continue };
            let owned = self
                .inputs
                .host
                .owned_type(d.description.as_deref().unwrap_or(""), &d.tag_list);
            if owned.as_deref() == Some(ty) && ghost.is_none_or(|g| *id > g) {
                ghost = Some(*id);
            }
        }
        let Some(id) = ghost else {
            return Ok(None);
        };
        match self.reset_by_id(&pat, id)? {
            ResetById::Reset(t) => Ok(Some(t)),
            ResetById::NoRunner => Ok(None),
            ResetById::Unsupported => {
                log::warn!(
                    "GitLab made {ty} runner {id}, but this GitLab cannot reset a token by id (before 14.3): runner {id} may remain in GitLab"
                );
                Ok(None)
            }
        }
    }

    /// `POST /runners/:id/reset_authentication_token`, repeated once when
    /// its answer is lost (a reset by id can always be repeated: the runner
    /// stays, only the token changes).
    pub(super) fn reset_by_id(&mut self, pat: &Secret, id: u64) -> Result<ResetById> {
        self.ensure_persistable()?;
        match self.client.reset_by_id(pat, id) {
            Err(e) if e.kind() == Kind::Ambiguous => {
                log::warn!("{e}; resetting runner {id} again");
                self.client.reset_by_id(pat, id)
            }
            other => other,
        }
    }

    /// `POST /runners/reset_authentication_token` with the runner's token.
    /// `Ok(None)` when GitLab refuses the token. When the answer is lost:
    /// with an access token, reset by id instead (the old token may be
    /// dead); else repeat once (a 403 then means the first one went through).
    pub(super) fn rotate(
        &mut self,
        token: &Secret,
        id: Option<u64>,
    ) -> Result<Option<IssuedToken>> {
        self.ensure_persistable()?;
        match self.client.reset_by_token(token) {
            Err(e) if e.kind() == Kind::Ambiguous => match (self.inputs.access.clone(), id) {
                (Some(pat), Some(id)) => {
                    log::warn!("{e}; resetting runner {id} by id instead");
                    match self.reset_by_id(&pat, id)? {
                        ResetById::Reset(t) => Ok(Some(t)),
                        ResetById::NoRunner | ResetById::Unsupported => Ok(None),
                    }
                }
                _ => {
                    log::warn!("{e}; rotating again");
                    self.client.reset_by_token(token)
                }
            },
            other => other,
        }
    }

    /// One create call with `admin-token`, by the configured workflow.
    fn create(&self, ty: &str) -> Result<IssuedToken> {
        let Some((admin, path)) = &self.inputs.admin else {
            return Err(Error::config(format!(
                "cannot create the {ty} runner: no admin-token in {}{}",
                self.s
                    .gitlab
                    .as_ref()
                    .map_or(self.s.prefix.clone(), |g| g.token_dir(&self.s.prefix))
                    .display(),
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
        let issued = if self
            .s
            .registration
            .user_runners(is_access_token(admin.expose()))
        {
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
}
