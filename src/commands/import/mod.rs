// SPDX-License-Identifier: MIT
//! `import`: adopt a hand-registered host. Reads its `config.toml`, learns
//! each runner's id by verify and its type from what GitLab says it is
//! (`owners`), and writes `config.template` and `runner-data.json` from it,
//! re-registering nothing: the template rendered with the state is the old
//! `config.toml`, byte for byte, where the state holds what the next run
//! would record anyway.

mod convert;
mod owners;

use crate::clock;
use crate::commands::Outcome;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::gitlab::{Client, Verified};
use crate::host::Host;
use crate::reconcile;
use crate::reconcile::inputs::same_gitlab;
use crate::secret::{Secret, TokenDirs, mask_tokens};
use crate::settings::Settings;
use crate::state::{Entry, State, toml_error};
use crate::template::Template;
use crate::trust::{self, Class};
use convert::Block;
use owners::{Seen, check_owners, foresee, observe};

/// Run `import` (with `--dry-run`: show what it would write).
pub fn run(s: &Settings) -> Result<Outcome> {
    let api_base = s.api_root.as_deref().ok_or_else(|| {
        Error::config(
            "import verifies each token of config.toml with GitLab: pass --api-url (or set GITLAB_RUNNER_AUTH_API_URL)",
        )
    })?;
    if s.stateless {
        return Err(Error::config(
            "import writes runner-data.json, which --stateless does not use: run it without --stateless",
        ));
    }
    reconcile::check_directories(s)?;
    let template_dir = fsutil::dir_of(&s.template_path);
    if template_dir != s.prefix.as_path() {
        trust::check_dir(template_dir)?;
    }
    refuse_overwrite(s)?;
    let _lock = if s.preview {
        None
    } else {
        Some(fsutil::lock(&s.lock_path, s.wait)?)
    };
    let config = s.config_path.display();
    let text = trust::read_text(&s.config_path, Class::Input)?.ok_or_else(|| {
        Error::config(format!(
            "failed to read {config}: it does not exist; import adopts the config.toml of a host whose runners were registered by hand (see --config)"
        ))
    })?;
    // the strict parse first: what it refuses (an id past i64, say) the
    // template made from the file would not render back
    let parse_error = |e: &toml::de::Error| {
        Error::data(format!(
            "failed to parse {config}: {}",
            toml_error(&text, e)
        ))
    };
    text.parse::<toml::Table>().map_err(|e| parse_error(&e))?;
    let blocks = convert::blocks(&text).map_err(|e| parse_error(&e))?;
    if blocks.is_empty() {
        return Err(Error::config(format!(
            "{config} has no [[runners]]: nothing to import"
        )));
    }
    check_types(s, blocks.len())?;
    let path = std::env::var("PATH").ok();
    let host = Host::detect(s.hostname.clone(), path.as_deref(), s.tags.clone())?;
    let adopted = adoptable(s, &blocks)?;
    for b in &adopted {
        for (key, why) in &b.kept {
            log::warn!(
                "{} (line {}): its {key} is {why}; left as it is, so runs will not update it",
                b.label(),
                b.line
            );
        }
    }

    let system_id = crate::host::system_id(&s.system_id_path);
    let dirs = TokenDirs::new(s.credentials_dir.clone(), &s.prefix);
    let access = dirs.read("access-token")?.map(|(t, _)| t);
    let now = clock::now();
    // each block's GitLab: --api-url's, or another whose credentials are
    // in <prefix>/<authority>/ (or $CREDENTIALS_DIRECTORY)
    let mut gitlabs = vec![Gitlab {
        url: None,
        client: Client::new(api_base, s.timeout, s.wait, s.ca_file.as_deref())?,
        access: access.clone(),
        admin: matches!(dirs.read("admin-token"), Ok(Some(_))),
    }];
    let mut of_block = Vec::new();
    for b in &adopted {
        of_block.push(gitlab_of(s, &mut gitlabs, b.url.as_deref())?);
    }
    let seen = adopted
        .iter()
        .zip(&of_block)
        .map(|(b, g)| {
            let g = &gitlabs[*g];
            observe(&g.client, g.access.as_ref(), system_id.as_deref(), b)
        })
        .collect::<Result<Vec<Seen>>>()?;
    // the type GitLab names for each: the ownership rule, nothing else
    let named: Vec<Option<String>> = seen
        .iter()
        .map(|o| {
            let d = o.details()?;
            host.owned_type(d.description.as_deref().unwrap_or(""), &d.tag_list)
        })
        .collect();
    let types: Vec<String> = if s.types.is_empty() {
        convert::name_types(&adopted, &named, &host.hostname)
    } else {
        adopted.iter().map(|b| s.types[b.n - 1].clone()).collect()
    };
    check_owners(s, &host, &adopted, &seen, &named, &types)?;

    let mut state = State::default();
    let (mut invalid, mut creates) = (0, 0);
    let mut no_admin: Vec<String> = Vec::new();
    for ((((b, o), ty), named), g) in adopted
        .iter()
        .zip(&seen)
        .zip(&types)
        .zip(&named)
        .zip(&of_block)
    {
        let g = &gitlabs[*g];
        if named.as_ref() == Some(ty) {
            log::debug!(
                "{}: type {ty}, as GitLab's description and tags of its runner name it",
                b.label()
            );
        }
        let mut entry = entry(b, ty, o.token.clone(), &o.verified, now, g.access.is_some());
        if let Some(url) = &g.url {
            entry.extra.insert(
                reconcile::inputs::GITLAB_KEY.into(),
                serde_json::Value::from(url.clone()),
            );
        }
        if matches!(o.verified, Verified::Invalid) {
            invalid += 1;
            if g.access.is_none() || entry.id.is_none() {
                creates += 1;
                if !g.admin {
                    no_admin.push(g.url.clone().unwrap_or_default());
                }
            }
        }
        foresee(o, &host, ty, b);
        state.entries.insert(ty.clone(), entry);
    }
    if creates > 0 && !no_admin.is_empty() {
        no_admin.sort();
        no_admin.dedup();
        for url in no_admin {
            let dir = match reconcile::gitlabs::authority(&url) {
                Some(a) if !url.is_empty() => s.prefix.join(a),
                _ => s.prefix.clone(),
            };
            log::warn!(
                "no usable admin-token in {}: the next run cannot create a runner for a token GitLab refused",
                dir.display()
            );
        }
    }

    let fills: Vec<(&Block, &str)> = adopted
        .iter()
        .copied()
        .zip(types.iter().map(String::as_str))
        .collect();
    let template_text = convert::template(&text, &fills);
    check_round_trip(s, &host, &text, &template_text, &fills, &state)?;
    let secrets: Vec<&str> = blocks
        .iter()
        .filter_map(|b| b.token.as_ref())
        .chain(access.as_ref())
        .map(Secret::expose)
        .collect();
    let shown = |ty: &String| {
        let id = state.entries[ty]
            .id
            .map_or(String::new(), |id| format!(" {id}"));
        format!("{ty}{id}")
    };
    let adopted_list = types.iter().map(shown).collect::<Vec<_>>().join(", ");
    let refused = if invalid > 0 {
        format!(", {invalid} with a token GitLab refused")
    } else {
        String::new()
    };
    if s.preview {
        println!("# {} (import would write it)", s.template_path.display());
        print!("{}", mask_tokens(&template_text, &secrets));
        println!(
            "# {} (import would write it; tokens masked)",
            s.state_path.display()
        );
        print!("{}", String::from_utf8_lossy(&masked(&state).to_json()));
        reconcile::summary(&format!(
            "import (dry run): would adopt {} runner(s) ({adopted_list}){refused}; nothing written",
            types.len()
        ));
        return Ok(Outcome::Imported);
    }
    fsutil::write_atomic(&s.state_path, &state.to_json())?;
    log::info!("wrote {}", s.state_path.display());
    fsutil::write_atomic(&s.template_path, template_text.as_bytes())?;
    log::info!("wrote {}", s.template_path.display());
    reconcile::summary(&format!(
        "import: adopted {} runner(s) ({adopted_list}){refused}; wrote {} and {}",
        types.len(),
        s.template_path.display(),
        s.state_path.display()
    ));
    Ok(Outcome::Imported)
}

/// A GitLab the blocks name: `url` is `None` for `--api-url`'s.
struct Gitlab {
    url: Option<String>,
    client: Client,
    access: Option<Secret>,
    /// An admin-token is there (the next run can create runners).
    admin: bool,
}

/// The index in `gitlabs` of the GitLab of a block whose url is `url`,
/// added with its own client and token files when it is a new one.
fn gitlab_of(s: &Settings, gitlabs: &mut Vec<Gitlab>, url: Option<&str>) -> Result<usize> {
    let primary = s.gitlab_url.as_deref().unwrap_or("");
    let Some(url) = url.filter(|u| !same_gitlab(u, primary)) else {
        return Ok(0);
    };
    if let Some(i) = gitlabs
        .iter()
        .position(|g| g.url.as_deref().is_some_and(|k| same_gitlab(url, k)))
    {
        return Ok(i);
    }
    let authority = reconcile::gitlabs::authority(url)
        .ok_or_else(|| Error::internal(format!("no authority in {url}")))?;
    let dir = s.prefix.join(&authority);
    if std::fs::symlink_metadata(&dir).is_ok() {
        trust::check_dir(&dir)?;
    }
    let dirs = TokenDirs::for_gitlab(s.credentials_dir.clone(), &s.prefix, &authority);
    let (_, api) = crate::settings::normalize_api_url(url)?;
    if let Some(e) = crate::settings::plain_http_refused(&api, s.allow_http) {
        return Err(e);
    }
    gitlabs.push(Gitlab {
        url: Some(url.trim_end_matches('/').to_string()),
        client: Client::new(&api, s.timeout, s.wait, s.ca_file.as_deref())?,
        access: dirs.read("access-token")?.map(|(t, _)| t),
        admin: matches!(dirs.read("admin-token"), Ok(Some(_))),
    });
    Ok(gitlabs.len() - 1)
}

/// An existing template or state is replaced only with `--force`
/// (`--dry-run` only warns).
fn refuse_overwrite(s: &Settings) -> Result<()> {
    let existing: Vec<String> = [&s.template_path, &s.state_path]
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .map(|p| p.display().to_string())
        .collect();
    if existing.is_empty() || s.force {
        return Ok(());
    }
    let it = if existing.len() == 1 { "it" } else { "them" };
    let msg = format!(
        "refusing to overwrite {}: import writes {it} from config.toml; pass --force to replace {it}",
        existing.join(" and ")
    );
    if s.preview {
        log::warn!("{msg}");
        return Ok(());
    }
    Err(Error::config(msg))
}

/// `--type`: one valid, distinct name per `[[runners]]`, or none.
fn check_types(s: &Settings, runners: usize) -> Result<()> {
    if s.types.is_empty() {
        return Ok(());
    }
    if s.types.len() != runners {
        return Err(Error::usage(format!(
            "{} --type given for {runners} [[runners]] in {}: give one per [[runners]], in order",
            s.types.len(),
            s.config_path.display()
        )));
    }
    for (i, t) in s.types.iter().enumerate() {
        if let Some(why) = convert::type_problem(t) {
            return Err(Error::usage(format!("invalid --type {t:?}: {why}")));
        }
        if s.types[..i].contains(t) {
            return Err(Error::usage(format!(
                "--type {t} given twice: each [[runners]] needs a type of its own"
            )));
        }
    }
    Ok(())
}

/// The runners this host can adopt: a token of its own (not from the
/// environment) for the GitLab of `--api-url`. The others stay in the
/// template as they are; two runners with one token are refused.
fn adoptable<'a>(s: &Settings, blocks: &'a [Block]) -> Result<Vec<&'a Block>> {
    let gitlab = s.gitlab_url.as_deref().unwrap_or("");
    let mut out: Vec<&Block> = Vec::new();
    for b in blocks {
        let problem = b
            .token
            .as_ref()
            .and_then(|t| crate::untrusted::token_problem(t.expose()));
        let why = match (&b.token, &b.url) {
            (None, _) => Some("it has no token".to_string()),
            (Some(t), _) if t.expose().contains('$') => {
                Some("its token comes from the environment".to_string())
            }
            // what GitLab handed gitlab-runner is never taken raw
            (Some(_), _) if problem.is_some() => Some(format!(
                "its token is not a GitLab runner token ({})",
                problem.unwrap_or_default()
            )),
            (_, None) => Some("it has no url".to_string()),
            (_, Some(u)) if !same_gitlab(u, gitlab) => match reconcile::gitlabs::authority(u) {
                // another GitLab whose credentials are here: adopted there
                Some(a) if reconcile::gitlabs::has_credentials(s, &a) => None,
                Some(a) => Some(format!(
                    "its url {} is another GitLab than --api-url ({gitlab}): to import it, create {} (0700) holding that GitLab's admin-token and access-token (0600), then run import again",
                    crate::secret::url_without_credentials(u),
                    s.prefix.join(a).display()
                )),
                None => Some(format!(
                    "its url {} is not the GitLab of --api-url ({gitlab}), so its token is not sent there",
                    crate::secret::url_without_credentials(u)
                )),
            },
            _ => None,
        };
        if let Some(why) = why {
            log::warn!(
                "{} (line {}): {why}; left as it is in {}, not managed",
                b.label(),
                b.line,
                s.template_path.display()
            );
            continue;
        }
        if let Some(first) = out.iter().find(|a| a.token == b.token) {
            return Err(Error::data(format!(
                "{} (line {}) and {} (line {}) of {} hold the same token (gitlab-runner register appends a second entry for a token it has): remove one, then import again",
                first.label(),
                first.line,
                b.label(),
                b.line,
                s.config_path.display()
            )));
        }
        out.push(b);
    }
    if out.is_empty() {
        return Err(Error::config(format!(
            "no runner of {} can be adopted: nothing to import",
            s.config_path.display()
        )));
    }
    Ok(out)
}

/// The state entry of runner `b` as type `ty`: what the next run would
/// record, so that it keeps it. A token GitLab refused is kept too, with
/// the id from `config.toml`, so that the next run heals that runner (with
/// an access token) or creates a new one and names the old.
fn entry(b: &Block, ty: &str, token: Secret, v: &Verified, now: i64, pat: bool) -> Entry {
    let label = b.label();
    let hint = token.hint();
    let mut e = Entry {
        id: b.id,
        token_expires_at: b.token_expires_at,
        token_obtained_at: b.token_obtained_at,
        ..Entry::default()
    };
    match v {
        Verified::Valid { id, expires_at } => {
            match (id, b.id) {
                (Some(got), Some(had)) if *got != had => log::warn!(
                    "{label}: config.toml says id {had}, GitLab says {got}: recording {got}"
                ),
                (Some(_), _) => {}
                (None, Some(had)) => log::info!(
                    "{label}: this GitLab (before 15.10) does not say a token's runner id: using id {had} from config.toml"
                ),
                (None, None) => log::warn!(
                    "{label}: this GitLab (before 15.10) does not say a token's runner id and config.toml has none: recording no id (healing by id will not be possible)"
                ),
            }
            e.id = id.or(b.id);
            e.token_expires_at = *expires_at;
            // what the next run would record when it is not known
            e.token_obtained_at = b.token_obtained_at.or(Some(now));
            log::info!(
                "adopted {label} as {ty}: runner {}, token {hint} valid, {}",
                e.id.map_or("?".to_string(), |i| i.to_string()),
                expires_at.map_or("no expiry".to_string(), |t| format!(
                    "expires {}",
                    clock::format(t)
                ))
            );
        }
        Verified::Invalid => {
            let next = match (b.id, pat) {
                (Some(id), true) => format!("heals runner {id} (reset by id with access-token)"),
                (Some(id), false) => {
                    format!("creates a new runner (runner {id} may remain in GitLab)")
                }
                (None, _) => "creates a new runner (config.toml names no id to heal)".into(),
            };
            log::warn!(
                "{label}: GitLab refused its token {hint} (unknown, deleted or expired); recorded as {ty}: the next run {next}"
            );
        }
    }
    e.token = Some(token);
    e
}

/// The template must render back to `config.toml`: byte for byte, except
/// for values the next run writes differently anyway (a time to the
/// second, an id GitLab knows), which are named.
fn check_round_trip(
    s: &Settings,
    host: &Host,
    text: &str,
    template_text: &str,
    fills: &[(&Block, &str)],
    state: &State,
) -> Result<()> {
    let origin = s.template_path.display().to_string();
    let values = |ty: &str| Some(state.entries.get(ty)?.values());
    let bug = |what: String| {
        Error::internal(format!(
            "{what}; nothing written (a bug in gitlab-runner-auth import, please report it)"
        ))
    };
    let template = Template::parse(template_text, &origin).map_err(|e| {
        bug(format!(
            "the template made from config.toml does not parse: {e}"
        ))
    })?;
    let rendered = template.render(&host.hostname, values)?;
    let Ok(table) = rendered.parse::<toml::Table>() else {
        return Err(bug(
            "the template made from config.toml renders to invalid TOML".into(),
        ));
    };
    template.check_shape(&host.hostname, &table, values)?;
    for t in template.expiry_without_obtained() {
        log::warn!(
            "{origin} fills {{{t}.token_expires_at}} but not {{{t}.token_obtained_at}} (config.toml has no token_obtained_at for it): gitlab-runner rotates such a token at once on start; add token_obtained_at = {{{t}.token_obtained_at}} beside it"
        );
    }
    let mut changed = 0;
    for (b, ty) in fills {
        for slot in &b.slots {
            let piece = convert::field(slot, ty);
            let new = Template::parse(&piece, &origin)?.render(&host.hostname, values)?;
            let old = &text[slot.span.clone()];
            if new == old {
                continue;
            }
            changed += 1;
            let line = convert::line_of(text, slot.span.start);
            if slot.key == "token" {
                log::info!(
                    "{} (line {line}): the next run writes its token without the escapes or spaces it has in config.toml",
                    b.label()
                );
            } else {
                log::info!(
                    "{} (line {line}): the next run writes {} = {new} (config.toml has {old})",
                    b.label(),
                    slot.key
                );
            }
        }
    }
    if rendered != text && changed == 0 {
        return Err(bug(
            "the template made from config.toml does not render back to it".into(),
        ));
    }
    if changed == 0 {
        log::info!(
            "{origin} with {} renders {} byte for byte",
            s.state_path.display(),
            s.config_path.display()
        );
    }
    Ok(())
}

/// `state` with every token shown as its hint, for `--dry-run`.
fn masked(state: &State) -> State {
    let mut m = state.clone();
    for e in m.entries.values_mut() {
        e.token = e.token.as_ref().map(|t| Secret::new(t.hint()));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_hold_what_the_next_run_would_record() {
        let b = Block {
            name: Some("node12-shell".into()),
            id: Some(7),
            token_obtained_at: None,
            token_expires_at: Some(50),
            ..Block::default()
        };
        let t = || Secret::new("glrt-0123456789abcdefghij");
        let e = entry(
            &b,
            "shell",
            t(),
            &Verified::Valid {
                id: Some(9),
                expires_at: Some(100),
            },
            10,
            false,
        );
        assert_eq!(
            (e.id, e.token_expires_at, e.token_obtained_at),
            (Some(9), Some(100), Some(10))
        );
        assert_eq!(e.token, Some(t()));
        let legacy = Verified::Valid {
            id: None,
            expires_at: None,
        };
        let e = entry(&b, "shell", t(), &legacy, 10, false);
        assert_eq!((e.id, e.token_expires_at), (Some(7), None));
        // a refused token stays, with the file's values, for the next run to heal
        let e = entry(&b, "shell", t(), &Verified::Invalid, 10, true);
        assert_eq!(
            (e.id, e.token_expires_at, e.token_obtained_at),
            (Some(7), Some(50), None)
        );
        assert_eq!(e.token, Some(t()));
        let m = masked(&State {
            entries: [("shell".to_string(), e)].into(),
        });
        assert_eq!(
            m.entries["shell"].token.as_ref().map(Secret::expose),
            Some("glrt-…ghij")
        );
    }
}
