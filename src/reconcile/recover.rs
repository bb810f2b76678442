// SPDX-License-Identifier: MIT
//! Temporary files a killed run left behind (`.runner-data.json.tmp-PID`,
//! `.config.toml.tmp-PID`: written, not yet renamed) may hold a token
//! GitLab issued and nothing else holds. At start they are read, their
//! tokens verified and adopted for this host's runners, and they are
//! removed.

use super::Engine;
use crate::error::Result;
use crate::fsutil;
use crate::gitlab::Verified;
use crate::secret::Secret;
use crate::state::{ConfigRunner, State, parse_config_runners};
use crate::trust::{self, Class};
use std::path::PathBuf;

/// A token found in a leftover file: the runner type it was stored for
/// (state files name it), and the file.
struct Found {
    ty: Option<String>,
    token: Secret,
    file: PathBuf,
}

impl Engine<'_> {
    /// Adopt what leftover temporary files hold, then remove them. In
    /// stateless mode their tokens join `existing` (the tokens this host
    /// holds); in stateful mode a token that verifies for a state entry's
    /// runner (or for the type the file names, when the entry has none yet)
    /// is stored and the state persisted.
    pub(super) fn recover_leftovers(&mut self, existing: &mut Vec<ConfigRunner>) -> Result<()> {
        let mut files = fsutil::leftover_temps(&self.s.config);
        if !self.s.stateless {
            files.extend(fsutil::leftover_temps(&self.s.state));
        }
        if files.is_empty() {
            return Ok(());
        }
        let held: Vec<Secret> = self
            .inputs
            .state
            .entries
            .values()
            .filter_map(|e| e.token.clone())
            .chain(existing.iter().map(|r| r.token.clone()))
            .collect();
        let mut found: Vec<Found> = Vec::new();
        for file in &files {
            let text = match trust::read_text(file, Class::Input) {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                Err(e) => {
                    // not ours to read or remove
                    log::warn!("leaving {}: {e}", file.display());
                    continue;
                }
            };
            let is_state = file
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".runner-data.json.tmp-"));
            let tokens: Vec<(Option<String>, Secret)> = if is_state {
                State::parse(text.as_bytes())
                    .map(|s| {
                        s.entries
                            .into_iter()
                            .filter_map(|(ty, e)| Some((Some(ty), e.token?)))
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                parse_config_runners(file, &text)
                    .map(|rs| rs.into_iter().map(|r| (None, r.token)).collect())
                    .unwrap_or_default()
            };
            for (ty, token) in tokens {
                if !held.contains(&token) && !found.iter().any(|f| f.token == token) {
                    found.push(Found {
                        ty,
                        token,
                        file: file.clone(),
                    });
                }
            }
        }
        if self.s.stateless {
            existing.extend(found.into_iter().map(|f| ConfigRunner {
                token: f.token,
                id: None,
                token_obtained_at: None,
            }));
        } else {
            self.adopt_found(found)?;
        }
        for file in &files {
            fsutil::remove(file)?;
            log::info!("removed {}, left by a run that was stopped", file.display());
        }
        Ok(())
    }

    fn adopt_found(&mut self, found: Vec<Found>) -> Result<()> {
        let answers = self.verify_all(&found, |f| &f.token)?;
        for (f, v) in found.into_iter().zip(answers) {
            let Verified::Valid { id, expires_at } = v else {
                continue;
            };
            let entries = &self.inputs.state.entries;
            let ty = entries
                .iter()
                .find(|(_, e)| id.is_some() && e.id == id)
                .map(|(t, _)| t.clone())
                .or_else(|| {
                    f.ty.clone().filter(|t| {
                        entries
                            .get(t)
                            .is_some_and(|e| e.token.is_none() || e.create_pending_since.is_some())
                    })
                });
            let Some(ty) = ty else { continue };
            if let (Some(pat), Some(id)) = (self.inputs.access.clone(), id) {
                let mine = self.client.runner(&pat, id)?.is_some_and(|d| {
                    self.inputs
                        .host
                        .owns(d.description.as_deref().unwrap_or(""), &d.tag_list, &ty)
                });
                if !mine {
                    continue;
                }
            }
            let now = self.now;
            let e = self.entry(&ty);
            e.id = id.or(e.id);
            e.token = Some(f.token);
            e.token_expires_at = expires_at;
            e.token_obtained_at = Some(now);
            e.create_pending_since = None;
            self.save_state()?;
            self.tally.adopted += 1;
            log::warn!(
                "recovered the {ty} runner {} token an earlier run was stopped before saving (from {})",
                id.map_or("?".to_string(), |i| i.to_string()),
                f.file.display()
            );
        }
        Ok(())
    }
}
