// SPDX-License-Identifier: MIT
//! Several GitLab instances in one `config.toml`: the template decides. A
//! runner type's GitLab is the `url` of its `[[runners]]` block; a block
//! whose url is not `--api-url`'s GitLab (scheme, host, port) is a GitLab
//! of its own when its credentials are there (`<prefix>/<authority>/`, or
//! `<authority>.admin-token` / `.access-token` in `$CREDENTIALS_DIRECTORY`);
//! else it stays `--api-url`'s, warned about as always. With one GitLab,
//! nothing changes: [`split`] gives the settings back as they were.

use super::inputs::same_gitlab;
use crate::error::{Error, Result};
use crate::settings::{GitLab, Settings, credential_name, normalize_api_url, plain_http_refused};
use crate::template::Template;
use crate::trust::{self, Class};
use std::collections::{BTreeMap, BTreeSet};

/// One `[[runners]]` block of the template: its `url`, and the runner
/// types whose token fields it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub url: Option<String>,
    pub types: Vec<String>,
}

/// The template's `[[runners]]` blocks, in order, rendered with a mark per
/// type (as `Template::check_shape` does) to tell which type each holds.
pub fn blocks(template: &Template, hostname: &str) -> Option<Vec<Block>> {
    let (rendered, marks) = template.render_marked(hostname).ok()?;
    let table: toml::Table = rendered.parse().ok()?;
    let runners = match table.get("runners") {
        Some(toml::Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    Some(
        runners
            .iter()
            .map(|r| {
                let mut strings = Vec::new();
                collect_strings(r, &mut strings);
                Block {
                    url: r.get("url").and_then(|u| u.as_str()).map(str::to_string),
                    types: marks
                        .iter()
                        .filter(|(_, m)| strings.iter().any(|s| s.contains(m.as_str())))
                        .map(|(t, _)| t.clone())
                        .collect(),
                }
            })
            .collect(),
    )
}

fn collect_strings(v: &toml::Value, out: &mut Vec<String>) {
    match v {
        toml::Value::String(s) => out.push(s.clone()),
        toml::Value::Array(a) => a.iter().for_each(|v| collect_strings(v, out)),
        toml::Value::Table(t) => t.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// The authority of a URL: its host, plus `:port` when the URL names one
/// (`https://gitlab.example.com:8443/x` → `gitlab.example.com:8443`),
/// lower-cased, without credentials. `None` when it cannot name a
/// directory.
pub fn authority(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let a = rest.split(['/', '?', '#']).next()?;
    let a = a.rsplit('@').next()?.to_ascii_lowercase();
    let ok = !a.is_empty()
        && a != "."
        && a != ".."
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:[]".contains(c));
    ok.then_some(a)
}

/// Whether another GitLab's credentials are there: `<prefix>/<authority>`
/// exists, or `$CREDENTIALS_DIRECTORY` holds one of its token files.
pub fn has_credentials(s: &Settings, authority: &str) -> bool {
    if std::fs::symlink_metadata(s.prefix.join(authority)).is_ok() {
        return true;
    }
    let name = credential_name(authority);
    s.credentials_dir.as_ref().is_some_and(|d| {
        ["admin-token", "access-token"]
            .iter()
            .any(|f| std::fs::symlink_metadata(d.join(format!("{name}.{f}"))).is_ok())
    })
}

/// Which of `all` (the GitLabs' urls, `--api-url`'s first) a block's url
/// names: a url of no other GitLab (or none) is `--api-url`'s.
pub fn gitlab_of(all: &[String], url: Option<&str>) -> usize {
    url.and_then(|u| all.iter().skip(1).position(|k| same_gitlab(u, k)))
        .map_or(0, |i| i + 1)
}

/// Whether a `config.toml` runner with `url` is the GitLab of `g`.
pub fn belongs(g: &GitLab, url: Option<&str>) -> bool {
    g.all.get(gitlab_of(&g.all, url)) == Some(&g.url)
}

/// The settings of each GitLab the template names, `--api-url`'s first.
/// One GitLab (or a template that cannot be read: the engine says why):
/// the settings as they are.
pub fn split(s: &Settings) -> Result<Vec<Settings>> {
    let one = Ok(vec![s.clone()]);
    let Some(primary) = s.gitlab_url.clone() else {
        return one;
    };
    let Ok(Some(text)) = trust::read_text(&s.template_path, Class::Input) else {
        return one;
    };
    let Ok(template) = Template::parse(&text, &s.template_path.display().to_string()) else {
        return one;
    };
    let hostname = s.hostname.as_deref().unwrap_or("localhost");
    let Some(blocks) = blocks(&template, hostname) else {
        return one;
    };
    // the GitLabs runner-data.json records its entries on: a block of such
    // a GitLab is that GitLab's even while its credentials are not here
    // (its tokens must never go to --api-url's), and with any record the
    // engine checks each entry's GitLab (a type moved back is a new runner)
    let recorded: BTreeMap<String, String> = trust::read(&s.state_path, Class::Input)
        .ok()
        .flatten()
        .and_then(|b| crate::state::State::parse(&b).ok())
        .map(|st| {
            st.entries
                .into_iter()
                .filter_map(|(ty, e)| {
                    let url = e
                        .extra
                        .get(super::inputs::GITLAB_KEY)?
                        .as_str()?
                        .to_string();
                    Some((ty, url))
                })
                .collect()
        })
        .unwrap_or_default();
    // the GitLab of each block: one already found (however its url is
    // spelt), else its url's when that one has credentials or records
    let mut all = vec![primary.clone()];
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    for b in &blocks {
        let i = match b.url.as_deref() {
            Some(u) if !same_gitlab(u, &primary) => {
                let known = all.iter().position(|k| same_gitlab(u, k));
                let records = || {
                    b.types
                        .iter()
                        .any(|t| recorded.get(t).is_some_and(|r| same_gitlab(r, u)))
                };
                match (known, authority(u)) {
                    (Some(i), _) => i,
                    (None, Some(a)) if has_credentials(s, &a) || records() => {
                        all.push(u.trim_end_matches('/').to_string());
                        all.len() - 1
                    }
                    _ => 0,
                }
            }
            _ => 0,
        };
        for t in &b.types {
            match owner.get(t) {
                Some(j) if *j != i => {
                    return Err(Error::config(format!(
                        "{}: runner type '{t}' is in [[runners]] blocks of two GitLabs ({} and {}): each type belongs to one GitLab; give the other block its own type",
                        s.template_path.display(),
                        all[*j.min(&i)],
                        all[*j.max(&i)]
                    )));
                }
                _ => {
                    owner.insert(t.clone(), i);
                }
            }
        }
    }
    // a GitLab an entry was made on stays known when no block names it any
    // more (its type moved back): its tokens belong to it, not to --api-url's
    for url in recorded.values() {
        if !all.iter().any(|k| same_gitlab(url, k)) && authority(url).is_some() {
            all.push(url.trim_end_matches('/').to_string());
        }
    }
    if all.len() == 1 && recorded.is_empty() {
        return one;
    }
    let mut out = Vec::new();
    for (i, url) in all.iter().enumerate() {
        let types: BTreeSet<String> = template
            .runner_types()
            .into_iter()
            .filter(|t| owner.get(t).copied().unwrap_or(0) == i)
            .collect();
        let mut g = s.clone();
        if i > 0 {
            let (base, api) = normalize_api_url(url).map_err(|e| {
                Error::config(format!(
                    "{}: a [[runners]] url is not a GitLab URL: {e}",
                    s.template_path.display()
                ))
            })?;
            if let Some(e) = plain_http_refused(&api, s.allow_http) {
                return Err(e);
            }
            g.gitlab_url = Some(base);
            g.api_root = Some(api);
        }
        g.gitlab = Some(GitLab {
            url: url.clone(),
            authority: if i == 0 { None } else { authority(url) },
            types,
            all: all.clone(),
        });
        out.push(g);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authority_is_the_host_and_the_port_the_url_names() {
        for (url, want) in [
            ("https://GitLab.example.com/", Some("gitlab.example.com")),
            (
                "https://gitlab.example.com:8443/x",
                Some("gitlab.example.com:8443"),
            ),
            ("http://u:p@127.0.0.1:1234", Some("127.0.0.1:1234")),
            ("https://[::1]:8443", Some("[::1]:8443")),
            ("https:///x", None),
            ("https://../", None),
        ] {
            assert_eq!(authority(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn each_block_names_the_types_it_holds() {
        let t = Template::parse(
            "[[runners]]\nurl = \"https://a\"\ntoken = \"{shell}\"\nid = {shell.id}\n[[runners]]\nurl = \"https://b\"\ntoken = \"{gpu.token}\"\n",
            "t",
        )
        .unwrap();
        let b = blocks(&t, "h").unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].types, ["shell"]);
        assert_eq!(b[1].url.as_deref(), Some("https://b"));
        assert_eq!(b[1].types, ["gpu"]);
    }
}
