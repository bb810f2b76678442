// SPDX-License-Identifier: MIT
//! The files: every rule of the local trust (the prefix, the directory of
//! `config.toml`, `$CREDENTIALS_DIRECTORY`, the template, the state, the
//! CA file, `config.toml`, the lock, the token files), the template
//! rendered with placeholders to valid TOML, each runner's `url`, and
//! `runner-data.json` parsed and matched with the template's fields. Each
//! is its own line, so one failure does not hide the next.

use super::Report;
use super::creds;
use super::install::Service;
use crate::error::Kind;
use crate::host::Host;
use crate::reconcile::inputs;
use crate::secret::{Secret, TokenDirs};
use crate::settings::Settings;
use crate::state::{ConfigRunner, State, parse_config_runners};
use crate::template::{Template, closest};
use crate::trust::{self, Class};
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What the file checks read, for the token and GitLab checks.
#[derive(Debug, Default)]
pub struct Found {
    pub state: Option<State>,
    /// `admin-token` and `access-token` (and where), when readable.
    pub admin: Option<(Secret, PathBuf)>,
    pub access: Option<(Secret, PathBuf)>,
    /// A token file that exists but was refused (its line says why).
    pub refused: Vec<&'static str>,
    /// A token the unit passes as a credential that doctor cannot read
    /// (encrypted, and not root), and why.
    pub unread: Vec<(&'static str, String)>,
    /// Every directory passed the trust rules: tokens read from them may
    /// be sent to GitLab.
    pub trusted: bool,
    /// The runners of the existing `config.toml`.
    pub existing: Vec<ConfigRunner>,
}

impl Found {
    /// Why token file `name`, passed by the unit, was not read.
    pub fn unread(&self, name: &str) -> Option<&str> {
        self.unread
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, why)| why.as_str())
    }

    /// Every token read, for masking what doctor prints.
    pub fn secrets(&self) -> Vec<&str> {
        let state = self
            .state
            .iter()
            .flat_map(|s| s.entries.values())
            .filter_map(|e| e.token.as_ref());
        self.admin
            .iter()
            .chain(self.access.iter())
            .map(|(t, _)| t)
            .chain(state)
            .chain(self.existing.iter().map(|r| &r.token))
            .map(Secret::expose)
            .collect()
    }
}

impl Found {
    /// Several GitLabs: what the checks of the GitLab of `g` see: its
    /// runners' state entries and `config.toml` blocks, and the tokens
    /// read (for `--api-url`'s, the prefix's).
    pub fn of_gitlab(&self, g: &Settings) -> Found {
        let Some(gl) = &g.gitlab else {
            return Found {
                state: self.state.clone(),
                admin: self.admin.clone(),
                access: self.access.clone(),
                refused: self.refused.clone(),
                unread: self.unread.clone(),
                trusted: self.trusted,
                existing: self.existing.clone(),
            };
        };
        let state = self.state.clone().map(|mut st| {
            st.entries.retain(|ty, _| gl.types.contains(ty));
            st
        });
        let existing = self
            .existing
            .iter()
            .filter(|c| crate::reconcile::gitlabs::belongs(gl, c.url.as_deref()))
            .cloned()
            .collect();
        let primary = gl.authority.is_none();
        Found {
            state,
            admin: self.admin.clone().filter(|_| primary),
            access: self.access.clone().filter(|_| primary),
            refused: if primary {
                self.refused.clone()
            } else {
                Vec::new()
            },
            unread: if primary {
                self.unread.clone()
            } else {
                Vec::new()
            },
            trusted: self.trusted,
            existing,
        }
    }
}

/// Another GitLab's token files: `<prefix>/<authority>/` under the trust
/// rules, and its tokens read as `run` reads them (`$CREDENTIALS_DIRECTORY`
/// first, as `<authority>.admin-token`).
pub fn other_gitlab(g: &Settings, authority: &str, main: &Found, r: &mut Report) -> Found {
    let mut f = main.of_gitlab(g);
    let dir = g.prefix.join(authority);
    if std::fs::symlink_metadata(&dir).is_ok() {
        directory(r, "token dir", &dir, &mut f);
    } else {
        r.ok(
            "token dir",
            format!(
                "no {}: its tokens come from $CREDENTIALS_DIRECTORY",
                dir.display()
            ),
        );
    }
    let dirs = TokenDirs::for_gitlab(g.credentials_dir.clone(), &g.prefix, authority);
    for name in ["admin-token", "access-token"] {
        read_token(&dirs, name, &mut f, r);
    }
    f
}

/// Read token file `name` into `f`, with its line.
fn read_token(dirs: &TokenDirs, name: &'static str, f: &mut Found, r: &mut Report) {
    match dirs.read(name) {
        Ok(Some((t, path))) => {
            r.ok(
                name,
                format!(
                    "{}: mode {:04o}, no other user can read or change it",
                    path.display(),
                    mode_of(&path)
                ),
            );
            let held = Some((t, path));
            match name {
                "admin-token" => f.admin = held,
                _ => f.access = held,
            }
        }
        Ok(None) => {}
        Err(e) => {
            r.error(name, &e, None);
            f.refused.push(name);
        }
    }
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).map_or(0, |m| m.mode() & 0o7777)
}

/// The files checks, in the order a run reads them.
pub fn check(s: &Settings, service: &Service, r: &mut Report) -> Found {
    let mut f = Found {
        trusted: true,
        ..Found::default()
    };
    directory(r, "prefix", &s.prefix, &mut f);
    let config_dir = crate::fsutil::dir_of(&s.config_path);
    if config_dir != s.prefix {
        directory(r, "config.toml dir", config_dir, &mut f);
    }
    if let Some(c) = &s.credentials_dir {
        directory(r, "credentials", c, &mut f);
    }
    let template = template(s, r);
    f.state = state(s, r, template.as_ref());
    let host = match Host::detect(
        s.hostname.clone(),
        std::env::var("PATH").ok().as_deref(),
        s.tags.clone(),
    ) {
        Ok(h) => {
            let from = if s.hostname.is_some() {
                "--hostname, GITLAB_RUNNER_AUTH_HOSTNAME"
            } else {
                "the kernel's"
            };
            r.ok("hostname", format!("{} ({from})", h.hostname));
            Some(h)
        }
        Err(e) => {
            r.error("hostname", &e, None);
            None
        }
    };
    if let (Some(t), Some(st)) = (&template, &f.state) {
        types(s, r, t, st, host.as_ref());
    }
    f.existing = config(s, r);
    if let Some(ca) = &s.ca_file {
        ca_file(r, ca);
    }
    lock(s, r);
    let dirs = TokenDirs::new(s.credentials_dir.clone(), &s.prefix);
    for name in ["admin-token", "access-token"] {
        // the service reads the unit's credential first; doctor, outside
        // it, reads it where the unit loads it from (unless doctor itself
        // was given it in its own $CREDENTIALS_DIRECTORY)
        let own = s
            .credentials_dir
            .as_ref()
            .is_some_and(|d| std::fs::symlink_metadata(d.join(name)).is_ok());
        if let Some(c) = creds::of(&service.credentials, name).filter(|_| !own) {
            creds::check(s, c, name, &mut f, r);
            creds::shadowed(s, c, name, r);
            continue;
        }
        read_token(&dirs, name, &mut f, r);
    }
    f
}

/// A directory this tool writes in or reads tokens from.
fn directory(r: &mut Report, name: &str, dir: &Path, f: &mut Found) {
    if !dir.is_dir() {
        let kind = if name == "config.toml dir" {
            Kind::Write
        } else {
            Kind::Config
        };
        r.fail(
            name,
            kind,
            format!("{} is not a directory", dir.display()),
            format!("mkdir -m 700 {}", dir.display()),
        );
        f.trusted = false;
        return;
    }
    match trust::check_dir(dir) {
        Ok(()) => r.ok(
            name,
            format!(
                "{}: mode {:04o}; no other user can write it or a directory above it",
                dir.display(),
                mode_of(dir)
            ),
        ),
        Err(e) => {
            r.error(name, &e, None);
            f.trusted = false;
        }
    }
}

/// `config.template`: the trust rules, then its fields parse.
fn template(s: &Settings, r: &mut Report) -> Option<Template> {
    let path = &s.template_path;
    let text = trust::check_parent_dirs(path).and_then(|()| trust::read_text(path, Class::Input));
    let text = match text {
        Ok(Some(t)) => t,
        Ok(None) => {
            r.fail(
                "config.template",
                Kind::Config,
                format!("{} does not exist", path.display()),
                format!(
                    "cp /usr/share/doc/gitlab-runner-auth/examples/config.template {} and set each runner's url to your GitLab",
                    path.display()
                ),
            );
            return None;
        }
        Err(e) => {
            r.error("config.template", &e, None);
            return None;
        }
    };
    match Template::parse(&text, &path.display().to_string()) {
        Ok(t) => {
            let mut names: Vec<String> = t.fields().map(|f| f.base.clone()).collect();
            names.sort();
            names.dedup();
            r.ok(
                "config.template",
                format!(
                    "{}: its fields parse ({})",
                    path.display(),
                    names.join(", ")
                ),
            );
            Some(t)
        }
        Err(e) => {
            r.error(
                "config.template",
                &e,
                Some("correct the field at that line and column ({{ and }} are literal braces)"),
            );
            None
        }
    }
}

/// `runner-data.json`: the trust rules, then it parses; the runner types.
fn state(s: &Settings, r: &mut Report, template: Option<&Template>) -> Option<State> {
    if s.stateless {
        r.ok(
            "runner-data.json",
            "not used (--stateless: GitLab is the source of truth)",
        );
        return template.map(|t| State::with_types(t.runner_types()));
    }
    let path = &s.state_path;
    match State::load(path) {
        Ok(Some(st)) => {
            let types: Vec<&str> = st.entries.keys().map(String::as_str).collect();
            let mode = mode_of(path);
            if mode & 0o077 != 0 {
                r.warn(
                    "runner-data.json",
                    format!(
                        "{} holds tokens and is readable by group or others (mode {mode:04o})",
                        path.display()
                    ),
                    format!("chmod 600 {} (the next run does it too)", path.display()),
                );
            } else {
                r.ok(
                    "runner-data.json",
                    format!("{}: runner types {}", path.display(), types.join(", ")),
                );
            }
            Some(st)
        }
        Ok(None) => {
            r.ok(
                "runner-data.json",
                format!(
                    "{} does not exist: the runner types are batch and shell",
                    path.display()
                ),
            );
            Some(State::default_types())
        }
        Err(e) => {
            let fix = format!(
                "correct it by hand (python3 -m json.tool {} shows where the JSON breaks); its shape is {{\"shell\": {{\"id\": 12, \"token\": \"glrt-…\"}}, …}}",
                path.display()
            );
            r.error("runner-data.json", &e, Some(&fix));
            None
        }
    }
}

/// The template's fields against the runner types, then the template
/// rendered with placeholders as TOML, and each runner's `url`.
fn types(s: &Settings, r: &mut Report, t: &Template, st: &State, host: Option<&Host>) {
    if st.entries.is_empty() {
        r.fail(
            "runner types",
            Kind::Config,
            format!("{} names no runner", s.template_path.display()),
            "use a field such as {shell} for each runner's token",
        );
        return;
    }
    let types: BTreeSet<String> = st.entries.keys().cloned().collect();
    let from_file = s.stateless || s.state_path.exists();
    let origin = if s.stateless {
        "not a runner type of the template".to_string()
    } else if from_file {
        format!("no such runner type in {}", s.state_path.display())
    } else {
        format!(
            "{} does not exist, so the runner types are batch and shell",
            s.state_path.display()
        )
    };
    let mut ok = true;
    if let Err(e) = t.check_types(&types, &origin) {
        let unknown = t
            .fields()
            .find(|f| f.base != crate::template::HOSTNAME && !types.contains(&f.base));
        let fix = unknown.map(|f| {
            let known = types
                .iter()
                .map(String::as_str)
                .chain([crate::template::HOSTNAME]);
            match closest(&f.base, known) {
                Some(k) => format!(
                    "write {{{k}}} for {{{}}} at {}:{}:{}",
                    f.base,
                    s.template_path.display(),
                    f.line,
                    f.col
                ),
                None => format!(
                    "add \"{}\": {{}} to {} or correct the field",
                    f.base,
                    s.state_path.display()
                ),
            }
        });
        r.error("runner types", &e, fix.as_deref());
        ok = false;
    }
    let used = t.runner_types();
    // a type a misspelt field meant is not reported again as unused
    let meant: Vec<&str> = t
        .fields()
        .filter(|f| f.base != crate::template::HOSTNAME && !types.contains(&f.base))
        .filter_map(|f| closest(&f.base, types.iter().map(String::as_str)))
        .collect();
    for unused in types
        .iter()
        .filter(|ty| !used.contains(*ty) && !meant.contains(&ty.as_str()))
    {
        let fix = crate::reconcile::inputs::unused_type_fix(s, unused, from_file);
        r.fail(
            "runner types",
            Kind::Config,
            format!(
                "runner type '{unused}' is never used by {}",
                s.template_path.display()
            ),
            fix,
        );
        ok = false;
    }
    for ty in t.expiry_without_obtained() {
        r.warn(
            "runner types",
            format!("{} fills {{{ty}.token_expires_at}} but not {{{ty}.token_obtained_at}}: gitlab-runner will rotate that token at once on start", s.template_path.display()),
            format!("add token_obtained_at = {{{ty}.token_obtained_at}} to that [[runners]]"),
        );
    }
    if ok {
        let names: Vec<&str> = types.iter().map(String::as_str).collect();
        r.ok(
            "runner types",
            format!(
                "the template and the state name the same types: {}",
                names.join(", ")
            ),
        );
    }
    let Some(host) = host else {
        r.skip("rendered TOML", "not rendered: the hostname is unknown");
        return;
    };
    // every field gets a placeholder, known type or not: the TOML around
    // them is checked even while a field is misspelt
    let all: BTreeSet<String> = types.iter().cloned().chain(used).collect();
    let table = match inputs::render_placeholders(s, t, &host.hostname, all.iter()) {
        Ok(table) => table,
        Err(e) => {
            r.error(
                "rendered TOML",
                &e,
                Some("correct the template at that line and column: the text around the fields must be TOML"),
            );
            return;
        }
    };
    let n = table
        .get("runners")
        .and_then(|v| v.as_array())
        .map_or(0, Vec::len);
    r.ok(
        "rendered TOML",
        format!("the template renders to valid TOML with {n} [[runners]]"),
    );
    let Some(api) = &s.gitlab_url else {
        r.skip("runner url", "no --api-url to compare with");
        return;
    };
    // several GitLabs: a block naming one of them is no stranger
    let gitlabs = crate::reconcile::gitlabs::split(s).unwrap_or_default();
    let all = gitlabs
        .first()
        .and_then(|g| g.gitlab.as_ref())
        .map(|g| g.all.clone());
    let problems = inputs::foreign_urls(gitlabs.first().unwrap_or(s), &table);
    if problems.is_empty() {
        r.ok(
            "runner url",
            match all {
                Some(all) => format!(
                    "every [[runners]] url is the GitLab of --api-url ({api}) or of its own credentials ({})",
                    all[1..].join(", ")
                ),
                None => format!("every [[runners]] url is the GitLab of --api-url ({api})"),
            },
        );
    }
    for p in problems {
        if p.plain_http {
            r.fail(
                "runner url",
                Kind::Config,
                p.text,
                "use https:// in that [[runners]] url of the template",
            );
        } else {
            r.warn(
                "runner url",
                p.text,
                format!("set url = \"{api}\" in that [[runners]] of the template (or --api-url to the GitLab it names)"),
            );
        }
    }
}

/// The existing `config.toml`: the trust rules, private, parses.
fn config(s: &Settings, r: &mut Report) -> Vec<ConfigRunner> {
    let path = &s.config_path;
    let (file, meta) = match trust::open(path, Class::Input) {
        Ok(Some(f)) => f,
        Ok(None) => {
            r.ok(
                "config.toml",
                format!(
                    "{} does not exist yet: the next run writes it",
                    path.display()
                ),
            );
            return Vec::new();
        }
        Err(e) => {
            r.error("config.toml", &e, None);
            return Vec::new();
        }
    };
    let text = match trust::read_capped(path, file) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            r.error("config.toml", &e, None);
            return Vec::new();
        }
    };
    let mode = meta.mode() & 0o7777;
    match parse_config_runners(path, &text) {
        Err(e) => {
            r.warn(
                "config.toml",
                format!("{e}"),
                "nothing to do: the next run replaces it",
            );
            Vec::new()
        }
        Ok(runners) if mode & 0o077 != 0 => {
            r.warn(
                "config.toml",
                format!(
                    "{} holds tokens and is readable by group or others (mode {mode:04o})",
                    path.display()
                ),
                format!("chmod 600 {} (the next run does it too)", path.display()),
            );
            runners
        }
        Ok(runners) => {
            r.ok(
                "config.toml",
                format!(
                    "{}: mode {mode:04o}, {} runner token(s)",
                    path.display(),
                    runners.len()
                ),
            );
            runners
        }
    }
}

/// `--ca-file`: the trust rules, and PEM certificates in it.
fn ca_file(r: &mut Report, ca: &Path) {
    let bytes = trust::check_parent_dirs(ca).and_then(|()| trust::read(ca, Class::Input));
    match bytes {
        Ok(Some(b)) => {
            let n = String::from_utf8_lossy(&b)
                .matches("-----BEGIN CERTIFICATE-----")
                .count();
            if n == 0 {
                r.fail(
                    "--ca-file",
                    Kind::Config,
                    format!("{}: no PEM certificates in it", ca.display()),
                    "point --ca-file (GITLAB_RUNNER_AUTH_CA_FILE) at the site CA's PEM file",
                );
            } else {
                r.ok("--ca-file", format!("{}: {n} certificate(s)", ca.display()));
            }
        }
        Ok(None) => r.fail(
            "--ca-file",
            Kind::Config,
            format!("{} does not exist", ca.display()),
            "point --ca-file (GITLAB_RUNNER_AUTH_CA_FILE) at the site CA's PEM file",
        ),
        Err(e) => r.error("--ca-file", &e, None),
    }
}

/// The lock file, opened the same way as every input.
fn lock(s: &Settings, r: &mut Report) {
    let path = &s.lock_path;
    if std::fs::symlink_metadata(path).is_err() {
        r.ok(
            "lock",
            format!(
                "{} does not exist yet: the next run makes it",
                path.display()
            ),
        );
        return;
    }
    match trust::open(path, Class::Input) {
        Ok(_) => r.ok(
            "lock",
            format!(
                "{}: a regular file no other user can change",
                path.display()
            ),
        ),
        Err(e) => r.error("lock", &e, None),
    }
}
