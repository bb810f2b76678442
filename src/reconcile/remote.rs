// SPDX-License-Identifier: MIT
//! Changes to runners on GitLab beyond their tokens: restoring drifted
//! descriptions and tags, `--prune`, and bounded deletions.

use super::Engine;
use super::observe::parallel;
use crate::error::{Error, Result};
use crate::gitlab::api::RunnerDetails;
use crate::secret::Secret;

impl Engine<'_> {
    /// With an access token, bring each runner's description and tags on
    /// GitLab back to what this host registers. Failures only warn: the
    /// config is already good. The number of runners that drifted.
    pub(super) fn reconcile_tags(&mut self) -> usize {
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
        // Read what this run has not read yet (a runner healed by id keeps
        // its details; one created now has the right ones).
        let unread: Vec<u64> = ids
            .iter()
            .map(|(_, id)| *id)
            .filter(|id| !self.details.contains_key(id) && !self.created.contains(id))
            .collect();
        for (id, d) in unread
            .iter()
            .zip(parallel(&unread, |id| self.client.runner(&pat, *id)))
        {
            self.details.insert(*id, d);
        }
        let mut drifted = 0;
        for (ty, id) in ids {
            let host = &self.inputs.host;
            let (want_desc, want_tags) = (host.description(&ty), host.tags(&ty));
            let details = match self.details.get(&id) {
                Some(Ok(Some(d))) => d.clone(),
                Some(Ok(None)) | None => continue,
                Some(Err(e)) => {
                    log::warn!("cannot check the tags of {ty} runner {id}: {e}");
                    continue;
                }
            };
            let have_desc = details.description.clone().unwrap_or_default();
            // Only this host's runner is ever renamed or re-tagged.
            if !host.owns(&have_desc, &details.tag_list, &ty) {
                continue;
            }
            let sorted = |v: &[String]| {
                let mut v = v.to_vec();
                v.sort();
                v.dedup();
                v
            };
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

    /// `--prune`: delete this host's runners (by the ownership rule) that the
    /// state does not hold, within `--max-delete`.
    pub(super) fn prune(&mut self) -> Result<()> {
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
        let listed: Vec<u64> = self
            .client
            .list_tagged(&pat, self.s.scope, std::slice::from_ref(&hostname))?
            .into_iter()
            .map(|r| r.id)
            .filter(|id| !keep.contains(id) && !self.deleting.contains(id))
            .collect();
        // List entries carry no tags: the ownership rule needs the details.
        let unread: Vec<u64> = listed
            .iter()
            .copied()
            .filter(|id| !matches!(self.details.get(id), Some(Ok(_))))
            .collect();
        let read = parallel(&unread, |id| self.client.runner(&pat, *id));
        for (id, d) in unread.iter().zip(read) {
            self.details.insert(*id, Ok(d?));
        }
        let host = &self.inputs.host;
        let doomed: Vec<RunnerDetails> = listed
            .iter()
            .filter_map(|id| match self.details.get(id) {
                Some(Ok(Some(d))) => Some(d),
                _ => None,
            })
            .filter(|d| {
                host.owned_type(d.description.as_deref().unwrap_or(""), &d.tag_list)
                    .is_some()
            })
            .cloned()
            .collect();
        self.delete_runners(&pat, &doomed, "--prune", "not configured on this host")
    }

    /// Delete (for `plan`: list) `doomed`, unless that would make more than
    /// `--max-delete` deletions in this run.
    pub(super) fn delete_runners(
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
}
