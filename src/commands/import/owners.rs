// SPDX-License-Identifier: MIT
//! What GitLab says of each runner `import` adopts (verify, then its
//! details with access-token), and the ownership rule applied to the type
//! import gives it: a runner GitLab names a type for gets that type, and
//! import never writes a state entry the next run would leave alone as
//! another host's. Reads only.

use super::convert::{self, Block};
use crate::error::{Error, Result};
use crate::gitlab::api::RunnerDetails;
use crate::gitlab::{Client, Verified};
use crate::host::Host;
use crate::secret::Secret;
use crate::settings::Settings;

/// What GitLab says of one runner of `config.toml`.
pub struct Seen {
    pub token: Secret,
    pub verified: Verified,
    /// Its runner id: verify's answer, else the `id` of `config.toml`.
    pub id: Option<u64>,
    pub details: Lookup,
}

/// `GET /runners/:id` for [`Seen::id`], with access-token.
pub enum Lookup {
    /// No access token, or no id to read.
    Unread,
    /// GitLab has no runner of that id.
    Missing,
    /// The read failed: why.
    Failed(String),
    Found(RunnerDetails),
}

impl Seen {
    pub fn details(&self) -> Option<&RunnerDetails> {
        match &self.details {
            Lookup::Found(d) => Some(d),
            _ => None,
        }
    }
}

/// Verify runner `b`'s token and, with an access token, read its runner's
/// description and tags: by the id verify answers, else (a token GitLab
/// refused, or GitLab before 15.10) by the `id` that `config.toml` holds.
/// Reads only.
pub fn observe(
    client: &Client,
    pat: Option<&Secret>,
    system_id: Option<&str>,
    b: &Block,
) -> Result<Seen> {
    let token = b.token.clone().ok_or_else(|| {
        Error::internal(format!(
            "{} has no token to verify (a bug in gitlab-runner-auth import, please report it)",
            b.label()
        ))
    })?;
    let verified = client.verify(&token, system_id)?;
    let id = match &verified {
        Verified::Valid { id, .. } => id.or(b.id),
        Verified::Invalid => b.id,
    };
    let details = match (pat, id) {
        (Some(pat), Some(id)) => match client.runner(pat, id) {
            Ok(Some(d)) => Lookup::Found(d),
            Ok(None) => Lookup::Missing,
            Err(e) => Lookup::Failed(e.to_string()),
        },
        _ => Lookup::Unread,
    };
    Ok(Seen {
        token,
        verified,
        id,
        details,
    })
}

/// The ownership rule, before anything is written: a runner GitLab shows
/// that is not this host's runner of the type import gives it would be
/// left alone by the next run, which would create a new runner in its
/// place. Each is named, with the `--type` that adopts it when GitLab names
/// one; import stops (65) unless `--force` (`--dry-run` only warns).
pub fn check_owners(
    s: &Settings,
    host: &Host,
    adopted: &[&Block],
    seen: &[Seen],
    named: &[Option<String>],
    types: &[String],
) -> Result<()> {
    let shown = crate::untrusted::shown;
    let mut problems = Vec::new();
    for (i, (b, o)) in adopted.iter().zip(seen).enumerate() {
        let Some(d) = o.details() else {
            continue;
        };
        let (ty, desc) = (&types[i], d.description.as_deref().unwrap_or(""));
        if host.owns(desc, &d.tag_list, ty) {
            continue;
        }
        let h = &host.hostname;
        // another block GitLab names the same type
        let twin = named[i].as_ref().and_then(|t| {
            (0..adopted.len()).find(|&j| j != i && named[j].as_ref() == Some(t) && types[j] == *t)
        });
        let fix = match (&named[i], twin) {
            (Some(t), Some(j)) => format!(
                "which is {h}'s {t} runner, as is the runner of {} (line {}): keep one of them in {}",
                adopted[j].label(),
                adopted[j].line,
                s.config_path.display()
            ),
            (Some(t), None) => match convert::type_problem(t) {
                Some(why) => format!(
                    "which is {h}'s runner of type '{}', a name import cannot use ({why}): rename it in GitLab",
                    shown(t)
                ),
                None => {
                    format!("which is {h}'s {t} runner, not its {ty}: import it with --type {t}")
                }
            },
            (None, _) => format!(
                "which is not {h}'s runner of any type by its ownership rule: give it the description {} and the tags {h} and {ty} in GitLab to import it as {ty}",
                host.description(ty)
            ),
        };
        problems.push(format!(
            "{} (line {}): GitLab shows runner {} as '{}' with tags [{}], {fix}; as it is, the next run would leave it alone and create a new {ty} runner",
            b.label(),
            b.line,
            d.id,
            shown(desc),
            shown(&d.tag_list.join(","))
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    if s.force || s.preview {
        let why = if s.force {
            "--force: imported as it is"
        } else {
            "import stops here without --force"
        };
        for p in &problems {
            log::warn!("{p} ({why})");
        }
        return Ok(());
    }
    Err(Error::data(format!(
        "refusing to import {}: {}; nothing written (pass --force to import it anyway)",
        s.config_path.display(),
        problems.join("; ")
    )))
}

/// Say what the next run will make of runner `b` as this host's `ty`: a
/// runner GitLab no longer has, one it could not read, drift. Reads only.
pub fn foresee(o: &Seen, host: &Host, ty: &str, b: &Block) {
    let label = b.label();
    let id = o.id.map_or("?".to_string(), |i| i.to_string());
    let d = match &o.details {
        Lookup::Found(d) => d,
        Lookup::Unread => return,
        Lookup::Missing => {
            log::warn!(
                "{label}: runner {id} does not exist in GitLab: the next run creates a new {ty} runner"
            );
            return;
        }
        Lookup::Failed(e) => {
            log::warn!("{label}: cannot read runner {id} to check it is this host's: {e}");
            return;
        }
    };
    let have = d.description.clone().unwrap_or_default();
    if !host.owns(&have, &d.tag_list, ty) {
        // named by check_owners
        return;
    }
    let (want, tags) = (host.description(ty), host.tags(ty));
    let shown = crate::untrusted::shown;
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v.dedup();
        v
    };
    if have != want || sorted(&d.tag_list) != sorted(&tags) {
        log::warn!(
            "{label}: the next run sets runner {id}'s description to {want} and its tags to [{}] in GitLab (now '{}', [{}])",
            tags.join(","),
            shown(&have),
            shown(&d.tag_list.join(","))
        );
    }
}
