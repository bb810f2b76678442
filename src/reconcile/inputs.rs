// SPDX-License-Identifier: MIT
//! The inputs of a run, read from disk and checked before any request:
//! the template (rendered with placeholders, parsed as TOML), the state, the
//! host's facts, the token files; and the token-holding files kept private.

use crate::error::{Error, Result};
use crate::fsutil;
use crate::host::{AutoTags, Host};
use crate::secret::{Secret, TokenDirs, TokenKind};
use crate::settings::Settings;
use crate::state::Entry;
use crate::state::State;
use crate::template::{RunnerValues, Template};
use crate::trust::{self, Class};
use std::collections::{BTreeMap, BTreeSet};

/// Everything read from disk, checked before any request.
pub struct Inputs {
    pub template: Template,
    pub state: State,
    pub host: Host,
    pub admin: Option<(Secret, std::path::PathBuf)>,
    pub access: Option<Secret>,
    /// Where `access` was read.
    pub access_path: Option<std::path::PathBuf>,
    pub system_id: Option<String>,
    /// The template's size, to know how much room `config.toml` needs.
    pub template_len: usize,
    /// Several GitLabs: the state entries of the other GitLabs' types,
    /// saved as they are (`state` holds this GitLab's only).
    pub others: BTreeMap<String, Entry>,
    /// How the other GitLabs' types render: as their blocks are in
    /// `config.toml` (a token gitlab-runner rotated is kept for their own
    /// run to adopt), else as in the state.
    pub shown: BTreeMap<String, Entry>,
}

impl Inputs {
    pub fn load(s: &Settings) -> Result<Inputs> {
        trust::check_parent_dirs(&s.template_path)?;
        let text = trust::read_text(&s.template_path, Class::Input)?.ok_or_else(|| {
            Error::read(
                &s.template_path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })?;
        let template = Template::parse(&text, &s.template_path.display().to_string())?;
        let (state, from_file) = if s.stateless {
            (State::with_types(template.runner_types()), true)
        } else {
            match State::load(&s.state_path)? {
                Some(st) => (st, true),
                None => (State::default_types(), false),
            }
        };
        if state.entries.is_empty() {
            return Err(Error::config(format!(
                "{} names no runner: use a field such as {{shell}} for each runner's token",
                s.template_path.display()
            )));
        }
        let types: BTreeSet<String> = state.entries.keys().cloned().collect();
        let origin = if from_file {
            format!("no such runner type in {}", s.state_path.display())
        } else {
            format!(
                "{} does not exist, so the runner types are batch and shell",
                s.state_path.display()
            )
        };
        template.check_types(&types, &origin)?;
        let used = template.runner_types();
        if let Some(unused) = types.iter().find(|t| !used.contains(*t)) {
            return Err(Error::config(format!(
                "runner type '{unused}' is never used by {}: {}",
                s.template_path.display(),
                unused_type_fix(s, unused, from_file)
            )));
        }
        for t in template.expiry_without_obtained() {
            log::warn!(
                "{} fills {{{t}.token_expires_at}} but not {{{t}.token_obtained_at}}: gitlab-runner will rotate that token at once on start",
                s.template_path.display()
            );
        }
        let auto = AutoTags::detect(&s.auto_tags, &s.sysroot, &|n| std::env::var_os(n))?;
        let path = std::env::var("PATH").ok();
        let host = Host {
            auto,
            ..Host::detect(s.hostname.clone(), path.as_deref(), s.tags.clone())?
        };
        let dirs = match s.gitlab.as_ref().and_then(|g| g.authority.as_deref()) {
            None => TokenDirs::new(s.credentials_dir.clone(), &s.prefix),
            Some(a) => {
                let dir = s.prefix.join(a);
                if std::fs::symlink_metadata(&dir).is_ok() {
                    trust::check_dir(&dir)?;
                }
                TokenDirs::for_gitlab(s.credentials_dir.clone(), &s.prefix, a)
            }
        };
        let admin = dirs.read("admin-token")?;
        if let Some((token, path)) = &admin {
            check_admin_token(path, token)?;
        }
        let (access, access_path) = match dirs.read("access-token")? {
            Some((t, p)) => (Some(t), Some(p)),
            None => (None, None),
        };
        let held = [admin.as_ref().map(|(_, p)| p), access_path.as_ref()];
        warn_job_readable(s, held.into_iter().flatten());
        if s.stateless && access.is_none() {
            return Err(Error::config(format!(
                "--stateless needs an access token (api scope) in {}/access-token to find this host's runners in GitLab{}",
                s.gitlab
                    .as_ref()
                    .map_or(s.prefix.clone(), |g| g.token_dir(&s.prefix))
                    .display(),
                s.gitlab
                    .as_ref()
                    .filter(|g| g.authority.is_some())
                    .map_or(String::new(), |g| format!(" {}", g.url))
            )));
        }
        check_template(s, &template, &host, state.entries.keys())?;
        let system_id = crate::host::system_id(&s.system_id_path);
        let mut state = state;
        let others = match &s.gitlab {
            Some(g) => own_entries(g, &mut state),
            None => BTreeMap::new(),
        };
        let shown = match &s.gitlab {
            Some(_) => shown_entries(s, &template, &host.hostname, &others),
            None => BTreeMap::new(),
        };
        Ok(Inputs {
            others,
            shown,
            template,
            state,
            host,
            admin,
            access,
            access_path,
            system_id,
            template_len: text.len(),
        })
    }
}

impl Inputs {
    /// The whole state: this GitLab's entries (`state`) and the others'.
    pub fn whole(&self, state: &State) -> State {
        let mut all = state.clone();
        for (ty, e) in &self.others {
            all.entries.entry(ty.clone()).or_insert_with(|| e.clone());
        }
        all
    }

    /// Several GitLabs: read the other GitLabs' entries and blocks again,
    /// as the runs of the GitLabs before this one left them.
    pub fn reload_others(&mut self, s: &Settings) -> Result<()> {
        let Some(g) = &s.gitlab else {
            return Ok(());
        };
        let mut changed = Vec::new();
        if !s.stateless
            && let Some(mut st) = State::load(&s.state_path)?
        {
            st.entries.retain(|ty, _| !g.types.contains(ty));
            for (ty, e) in st.entries {
                if let Some(old) = self.others.get(&ty)
                    && *old != e
                {
                    changed.push(ty.clone());
                    self.others.insert(ty, e);
                }
            }
        }
        self.shown = shown_entries(s, &self.template, &self.host.hostname, &self.others);
        // what an earlier GitLab's run changed in the state (a token
        // issued) renders as the state holds it
        for ty in changed {
            if let Some(e) = self.others.get(&ty) {
                self.shown.insert(ty, e.clone());
            }
        }
        Ok(())
    }
}

/// The key of a `runner-data.json` entry that records its GitLab (only
/// for a GitLab other than `--api-url`'s; the original script ignores it).
pub const GITLAB_KEY: &str = "gitlab";

/// The GitLab an entry was made on: the one it records, else `--api-url`'s.
pub fn recorded_gitlab<'a>(g: &'a crate::settings::GitLab, e: &'a Entry) -> &'a str {
    e.extra
        .get(GITLAB_KEY)
        .and_then(|v| v.as_str())
        .unwrap_or(&g.all[0])
}

/// Was `e` made on GitLab `url` (its runner and token are that GitLab's)?
pub fn entry_is_of(g: &crate::settings::GitLab, e: &Entry, url: &str) -> bool {
    same_gitlab(recorded_gitlab(g, e), url)
}

/// Keep this GitLab's entries in `state`, and return the others'. An entry
/// whose recorded GitLab is not this one (its block's url now names
/// another GitLab) is a new runner here: its old runner is named.
fn own_entries(g: &crate::settings::GitLab, state: &mut State) -> BTreeMap<String, Entry> {
    let all = std::mem::take(&mut state.entries);
    let mut others = BTreeMap::new();
    for (ty, mut e) in all {
        if !g.types.contains(&ty) {
            others.insert(ty, e);
            continue;
        }
        let recorded = e
            .extra
            .get(GITLAB_KEY)
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let moved = match (&recorded, &g.authority) {
            (Some(u), _) => !same_gitlab(u, &g.url),
            (None, Some(_)) => true,
            (None, None) => false,
        };
        if moved && (e.id.is_some() || e.token.is_some()) {
            let old = recorded.as_deref().unwrap_or(&g.all[0]);
            log::warn!(
                "{ty}: its [[runners]] block now names {}, so this host makes a new {ty} runner there; its old runner {} may remain in {old} (--prune deletes it there)",
                g.url,
                e.id.map_or("?".to_string(), |i| i.to_string())
            );
            e = Entry {
                extra: e.extra,
                ..Entry::default()
            };
        }
        match &g.authority {
            Some(_) => {
                e.extra
                    .insert(GITLAB_KEY.into(), serde_json::Value::from(g.url.clone()));
            }
            None => {
                e.extra.remove(GITLAB_KEY);
            }
        }
        state.entries.insert(ty, e);
    }
    others
}

/// How the other GitLabs' types render: the token (and gitlab-runner's
/// times and id) of their block in the existing `config.toml` when that
/// block still names the template's GitLab, else the state's.
fn shown_entries(
    s: &Settings,
    template: &Template,
    hostname: &str,
    others: &BTreeMap<String, Entry>,
) -> BTreeMap<String, Entry> {
    let mut shown = others.clone();
    let Some(blocks) = super::gitlabs::blocks(template, hostname) else {
        return shown;
    };
    // an entry made on another GitLab than its block now names (a type
    // moved) renders with no token until that GitLab's engine makes one:
    // its old token must never go to the new GitLab
    if let Some(g) = &s.gitlab {
        for b in &blocks {
            let owner = &g.all[super::gitlabs::gitlab_of(&g.all, b.url.as_deref())];
            for ty in &b.types {
                if let Some(e) = shown.get_mut(ty)
                    && !entry_is_of(g, e, owner)
                {
                    e.token = None;
                    e.id = None;
                    e.token_obtained_at = None;
                    e.token_expires_at = None;
                }
            }
        }
    }
    let Ok(Some(bytes)) = trust::read(&s.config_path, Class::Input) else {
        return shown;
    };
    let text = String::from_utf8_lossy(&bytes);
    let Ok(runners) = crate::state::config_runner_blocks(&s.config_path, &text) else {
        return shown;
    };
    for (b, r) in blocks.iter().zip(&runners) {
        let [ty] = b.types.as_slice() else { continue };
        let Some(e) = shown.get_mut(ty) else { continue };
        let url = r.get("url").and_then(|u| u.as_str());
        if !matches!((url, b.url.as_deref()), (Some(a), Some(b)) if same_gitlab(a, b)) {
            continue;
        }
        let Some(found) = crate::state::config_runner(&s.config_path, r) else {
            continue;
        };
        e.token = Some(found.token);
        e.id = found.id.or(e.id);
        e.token_obtained_at = found.token_obtained_at.or(e.token_obtained_at);
        e.token_expires_at = found.token_expires_at.or(e.token_expires_at);
    }
    shown
}

/// A runner authentication token (`glrt-…`, what GitLab 16+ shows when a
/// runner is made in its UI) in `admin-token` is refused before any
/// request: it authenticates one runner and can create none.
pub fn check_admin_token(path: &std::path::Path, token: &Secret) -> Result<()> {
    if TokenKind::of(token.expose()) != TokenKind::RunnerAuth {
        return Ok(());
    }
    Err(Error::config(format!(
        "refusing {}: it holds a runner authentication token ({}), which authenticates one existing runner and cannot create runners; to use that runner, put the token in runner-data.json as its type's token ({{\"shell\": {{\"token\": \"glrt-…\"}}}}, the template using {{shell}}) or literally in config.template, and delete admin-token; to have runners created, put an access token with create_runner scope (glpat-…) in admin-token instead",
        path.display(),
        token.hint()
    )))
}

/// The account gitlab-runner's package creates and runs jobs as.
pub const JOB_USER: &str = "gitlab-runner";

/// Warn, once, when the token files read from the prefix or the template
/// are owned by a user other than root that gitlab-runner may run jobs as:
/// this run's own user (a `USE_INIT_USER` install runs the pre-start as
/// the service's user, which is the job user of its shell and custom
/// executors) or `gitlab-runner`. A copy in `$CREDENTIALS_DIRECTORY` is
/// not the prefix's file, and `doctor` checks the real job user.
fn warn_job_readable<'a>(s: &'a Settings, tokens: impl Iterator<Item = &'a std::path::PathBuf>) {
    use std::os::unix::fs::MetadataExt;
    let euid = trust::effective_uid();
    let in_prefix = tokens.filter(|p| p.parent() == Some(s.prefix.as_path()));
    let mut owner = None;
    let mut files = Vec::new();
    for path in in_prefix.chain([&s.template_path]) {
        let Ok(m) = std::fs::symlink_metadata(path) else {
            continue;
        };
        let name = trust::user_name(m.uid());
        if m.uid() != 0 && (m.uid() == euid || name.as_deref() == Some(JOB_USER)) {
            owner = Some((name.unwrap_or_else(|| m.uid().to_string()), m.uid()));
            files.push(path.display().to_string());
        }
    }
    if let Some((name, uid)) = owner {
        log::warn!(
            "{}: owned by {name} (uid {uid}), not root: when gitlab-runner runs jobs as {name} (a USE_INIT_USER install with the shell or custom executor), every job can read the tokens and rewrite the template; gitlab-runner-auth doctor checks it (README: gitlab-runner running as its own user)",
            files.join(" and ")
        );
    }
}

/// How to fix a runner type the state (or, without a state file, the
/// default batch and shell) names but the template never uses.
pub fn unused_type_fix(s: &Settings, unused: &str, from_file: bool) -> String {
    if from_file {
        format!(
            "remove it from {} or use {{{unused}}} in the template",
            s.state_path.display()
        )
    } else {
        format!(
            "create {} listing the types the template uses, e.g. {{\"shell\": {{}}}}",
            s.state_path.display()
        )
    }
}

/// `runner-data.json` and `config.toml` hold tokens: one that group or
/// others can read (the original script left them `0644`) is made `0600`,
/// or, for a read-only command, warned about.
pub(super) fn keep_private(s: &Settings, read_only: bool) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let state = (!s.stateless).then_some(&s.state_path);
    for path in state.into_iter().chain([&s.config_path]) {
        // the trust rules first: nothing is changed on a refused file
        let Some((_, m)) = trust::open(path, Class::Input)? else {
            continue;
        };
        let mode = m.mode() & 0o7777;
        if !m.is_file() || mode & 0o077 == 0 {
            continue;
        }
        if read_only {
            log::warn!(
                "{} holds tokens and is readable by group or others (mode {mode:04o}); fix it with: chmod 600 {0}",
                path.display()
            );
        } else {
            fsutil::make_private(path)?;
            log::warn!(
                "{} holds tokens and was readable by group or others (mode {mode:04o}); made it 0600",
                path.display()
            );
        }
    }
    Ok(())
}

/// `rendered` as TOML, or an error naming the template and the place.
pub fn parse_rendered(s: &Settings, rendered: &str) -> Result<toml::Table> {
    rendered.parse::<toml::Table>().map_err(|e| {
        Error::data(format!(
            "{} renders to invalid TOML ({}); {} left unchanged",
            s.template_path.display(),
            crate::state::toml_error(rendered, &e),
            s.config_path.display()
        ))
    })
}

/// Before any request: the template, filled with placeholder values, must
/// be valid TOML (a problem found only after GitLab issued a token would
/// lose it). Warn about a runner whose `url` is not the GitLab of
/// `--api-url`: gitlab-runner sends its token there.
fn check_template<'a>(
    s: &Settings,
    template: &Template,
    host: &Host,
    types: impl Iterator<Item = &'a String>,
) -> Result<()> {
    let table = render_placeholders(s, template, &host.hostname, types)?;
    for w in foreign_urls(s, &table) {
        log::warn!("{}", w.text);
    }
    Ok(())
}

/// The template rendered with placeholder values for `types`, as TOML.
pub fn render_placeholders<'a>(
    s: &Settings,
    template: &Template,
    hostname: &str,
    types: impl Iterator<Item = &'a String>,
) -> Result<toml::Table> {
    let types: Vec<&String> = types.collect();
    let rendered = template.render(hostname, |ty| {
        types
            .iter()
            .find(|t| t.as_str() == ty)
            .map(|_| RunnerValues {
                token: "placeholder-token",
                id: Some(1),
                token_obtained_at: None,
                token_expires_at: None,
            })
    })?;
    parse_rendered(s, &rendered)
}

/// A problem of a rendered runner's `url`.
pub struct UrlProblem {
    pub text: String,
    /// Plain `http://` to a host that is not loopback: its token crosses
    /// the network unencrypted (a `doctor` failure, a run's warning).
    pub plain_http: bool,
}

/// A problem for each rendered runner whose `url` is not the GitLab of
/// `--api-url` (scheme, host and port: gitlab-runner sends its token
/// there), or is plain `http://` to a host that is not loopback.
pub fn foreign_urls(s: &Settings, table: &toml::Table) -> Vec<UrlProblem> {
    let Some(api) = s.gitlab_url.as_deref() else {
        return Vec::new();
    };
    let runners = table.get("runners").and_then(|r| r.as_array());
    let mut out = Vec::new();
    for r in runners.into_iter().flatten() {
        let Some(url) = r.get("url").and_then(|u| u.as_str()) else {
            continue;
        };
        let name = r.get("name").and_then(|n| n.as_str()).unwrap_or("?");
        let shown = crate::secret::url_without_credentials(url);
        let known = s
            .gitlab
            .as_ref()
            .is_some_and(|g| g.all.iter().any(|k| same_gitlab(url, k)));
        let api = s.gitlab.as_ref().map_or(api, |g| g.all[0].as_str());
        if !known && !same_gitlab(url, api) {
            out.push(UrlProblem {
                text: format!(
                    "{}: runner '{name}' has url {shown}, not the GitLab of --api-url ({}): gitlab-runner will send its token to {}",
                    s.template_path.display(),
                    origin_text(api),
                    origin_text(url)
                ),
                plain_http: false,
            });
        }
        if let Some(host) = crate::settings::plain_http_host(url) {
            out.push(UrlProblem {
                text: format!(
                    "{}: runner '{name}' has url {shown}, plain http:// to {host}: gitlab-runner sends its token unencrypted",
                    s.template_path.display()
                ),
                plain_http: true,
            });
        }
    }
    out
}

/// A URL's origin: its scheme (`https` when it has none), host and port
/// (the scheme's default when it names none), lower-cased.
pub fn url_origin(url: &str) -> (String, String, u16) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']').unwrap_or((v6, ""));
            (h, after.strip_prefix(':'))
        }
        None => match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        },
    };
    let default = if scheme == "http" { 80 } else { 443 };
    let port = port.and_then(|p| p.parse().ok()).unwrap_or(default);
    (scheme, host.to_ascii_lowercase(), port)
}

/// Do two URLs name the same GitLab: the same scheme, host and port?
pub fn same_gitlab(a: &str, b: &str) -> bool {
    url_origin(a) == url_origin(b)
}

/// `scheme://host:port` of a URL, for a message.
fn origin_text(url: &str) -> String {
    let (scheme, host, port) = url_origin(url);
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    format!("{scheme}://{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_compared_by_scheme_host_and_port() {
        let cases = [
            (
                "https://GitLab.example.com/",
                "https://gitlab.example.com:443",
                true,
            ),
            (
                "https://gitlab.example.com",
                "https://gitlab.example.com/api/v4",
                true,
            ),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080/", true),
            ("https://[::1]:443/x", "https://[::1]", true),
            (
                "http://gitlab.example.com",
                "https://gitlab.example.com",
                false,
            ),
            (
                "https://gitlab.example.com:8443",
                "https://gitlab.example.com",
                false,
            ),
            ("http://127.0.0.1", "http://127.0.0.1:8080", false),
            (
                "https://user:pw@gitlab.example.com",
                "https://gitlab.example.com",
                true,
            ),
            (
                "https://gitlab.example.com",
                "https://gitlab.example.net",
                false,
            ),
        ];
        for (a, b, same) in cases {
            assert_eq!(same_gitlab(a, b), same, "{a} {b}");
        }
        assert_eq!(origin_text("https://[::1]/x"), "https://[::1]:443");
    }
}
