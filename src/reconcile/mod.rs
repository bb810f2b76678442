// SPDX-License-Identifier: MIT
//! The reconcile: load and check every input before the network, observe
//! (verify tokens; in stateless mode, find the runners in GitLab), decide
//! per runner type with the pure `decide`, then apply (or, for `plan`, only
//! report), persisting state after every token GitLab issues, and finally
//! render and write `config.toml`.

mod decide;
mod issue;
mod observe;
mod recover;
mod remote;

use decide::{Action, Observed, decide, describe};

use crate::cli::Command;
use crate::clock;
use crate::error::{Error, Kind, Result};
use crate::fsutil;
use crate::gitlab::api::RunnerDetails;
use crate::gitlab::{Client, IssuedToken, ResetById};
use crate::host::Host;
use crate::secret::{Secret, TokenDirs, mask_tokens};
use crate::settings::Settings;
use crate::state::{ConfigRunner, Entry, State, parse_config_runners};
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
    pub system_id: Option<String>,
    /// The template's size, to know how much room `config.toml` needs.
    pub template_len: usize,
}

impl Inputs {
    pub fn load(s: &Settings) -> Result<Inputs> {
        trust::check_parent_dirs(&s.template)?;
        let text = trust::read_text(&s.template, Class::Input)?.ok_or_else(|| {
            Error::read(
                &s.template,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })?;
        let template = Template::parse(&text, &s.template.display().to_string())?;
        let (state, from_file) = if s.stateless {
            (State::with_types(template.runner_types()), true)
        } else {
            match State::load(&s.state)? {
                Some(st) => (st, true),
                None => (State::default_types(), false),
            }
        };
        if state.entries.is_empty() {
            return Err(Error::config(format!(
                "{} names no runner: use a field such as {{shell}} for each runner's token",
                s.template.display()
            )));
        }
        let types: BTreeSet<String> = state.entries.keys().cloned().collect();
        let origin = if from_file {
            format!("no such runner type in {}", s.state.display())
        } else {
            format!(
                "{} does not exist, so the runner types are batch and shell",
                s.state.display()
            )
        };
        template.check_types(&types, &origin)?;
        let used = template.runner_types();
        if let Some(unused) = types.iter().find(|t| !used.contains(*t)) {
            let fix = if from_file {
                format!(
                    "remove it from {} or use {{{unused}}} in the template",
                    s.state.display()
                )
            } else {
                format!(
                    "create {} listing the types the template uses, e.g. {{\"shell\": {{}}}}",
                    s.state.display()
                )
            };
            return Err(Error::config(format!(
                "runner type '{unused}' is never used by {}: {fix}",
                s.template.display()
            )));
        }
        for t in template.expiry_without_obtained() {
            log::warn!(
                "{} fills {{{t}.token_expires_at}} but not {{{t}.token_obtained_at}}: gitlab-runner will rotate that token at once on start",
                s.template.display()
            );
        }
        let path = std::env::var("PATH").ok();
        let host = Host::detect(s.hostname.clone(), path.as_deref(), s.tags.clone())?;
        let dirs = TokenDirs::new(s.credentials_dir.clone(), &s.prefix);
        let admin = dirs.read("admin-token")?;
        let access = dirs.read("access-token")?.map(|(t, _)| t);
        if s.stateless && access.is_none() {
            return Err(Error::config(format!(
                "--stateless needs an access token (api scope) in {}/access-token to find this host's runners in GitLab",
                s.prefix.display()
            )));
        }
        check_template(s, &template, &host, state.entries.keys())?;
        let system_id = crate::host::system_id(&s.system_id);
        Ok(Inputs {
            template,
            state,
            host,
            admin,
            access,
            system_id,
            template_len: text.len(),
        })
    }
}

/// `runner-data.json` and `config.toml` hold tokens: one that group or
/// others can read (the original script left them `0644`) is made `0600`,
/// or, for a read-only command, warned about.
fn keep_private(s: &Settings, read_only: bool) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let state = (!s.stateless).then_some(&s.state);
    for path in state.into_iter().chain([&s.config]) {
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
fn parse_rendered(s: &Settings, rendered: &str) -> Result<toml::Table> {
    rendered.parse::<toml::Table>().map_err(|e| {
        Error::data(format!(
            "{} renders to invalid TOML ({}); {} left unchanged",
            s.template.display(),
            crate::state::toml_error(rendered, &e),
            s.config.display()
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
    let types: Vec<&String> = types.collect();
    let rendered = template.render(&host.hostname, |ty| {
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
    let table = parse_rendered(s, &rendered)?;
    let Some(api) = s.api_url.as_deref().map(url_host) else {
        return Ok(());
    };
    let runners = table.get("runners").and_then(|r| r.as_array());
    for r in runners.into_iter().flatten() {
        let Some(url) = r.get("url").and_then(|u| u.as_str()) else {
            continue;
        };
        if !url_host(url).eq_ignore_ascii_case(&api) {
            log::warn!(
                "{}: runner '{}' has url {url}, not the GitLab of --api-url ({api}): gitlab-runner will send its token to {}",
                s.template.display(),
                r.get("name").and_then(|n| n.as_str()).unwrap_or("?"),
                url_host(url)
            );
        }
    }
    Ok(())
}

/// The host of a URL (no port), lower-cased.
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    host.to_ascii_lowercase()
}

#[derive(Default)]
struct Tally {
    verified: usize,
    created: usize,
    rotated: usize,
    healed: usize,
    adopted: usize,
    took_over: usize,
    updated: usize,
    deleted: usize,
}

struct Engine<'a> {
    s: &'a Settings,
    client: &'a Client,
    inputs: Inputs,
    now: i64,
    tally: Tally,
    /// `plan` output lines.
    plan: Vec<String>,
    /// Runner ids deleted (or, for `plan`, to be deleted) in this run.
    deleting: Vec<u64>,
    /// `GET /runners/:id` answers of this run, by runner id.
    details: BTreeMap<u64, Result<Option<RunnerDetails>>>,
    /// Runners created in this run.
    created: Vec<u64>,
    /// Whether the directories were proven writable (see `ensure_persistable`).
    probed: bool,
}

/// Run `run` or `plan`; the exit code on success.
pub fn run(s: &Settings) -> Result<i32> {
    let Some(api_base) = s.api_base.as_deref() else {
        log::info!(
            "not configured: no GitLab API URL (set GITLAB_RUNNER_AUTH_API_URL in /etc/default/gitlab-runner-auth or pass --api-url); nothing to do"
        );
        return Ok(0);
    };
    if !s.prefix.is_dir() {
        return Err(Error::config(format!(
            "prefix {} is not a directory",
            s.prefix.display()
        )));
    }
    trust::check_dir(&s.prefix)?;
    let config_dir = s
        .config
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !config_dir.is_dir() {
        return Err(Error::write(
            &s.config,
            format!("its directory {} does not exist", config_dir.display()),
        ));
    }
    trust::check_dir(config_dir)?;
    if let Some(dir) = &s.credentials_dir {
        trust::check_dir(dir)?;
    }
    let read_only = s.dry_run || s.command == Command::Status;
    let _lock = if read_only {
        None
    } else {
        Some(fsutil::lock(&s.lock, s.wait)?)
    };
    let inputs = Inputs::load(s)?;
    keep_private(s, read_only)?;
    let client = Client::new(api_base, s.timeout, s.wait, s.ca_file.as_deref())?;
    let mut inputs = inputs;
    let mut extra = Vec::new();
    if s.stateless && matches!(s.command, Command::Status | Command::Unregister) {
        // GitLab holds what runner-data.json would: find it without changing anything.
        let read_only = Settings {
            dry_run: true,
            ..s.clone()
        };
        let mut finder = Engine::new(&read_only, &client, inputs);
        let existing = finder.existing_runners()?;
        finder.observe_gitlab(&existing)?;
        extra = finder.deleting;
        inputs = finder.inputs;
    }
    match s.command {
        Command::Status => return crate::status::status(s, &client, &inputs),
        Command::Unregister => return crate::status::unregister(s, &client, inputs, &extra),
        Command::Run | Command::Plan => {}
    }
    let mut engine = Engine::new(s, &client, inputs);
    match engine.reconcile() {
        Err(e)
            if e.kind() == Kind::Unreachable
                && s.offline_ok
                && s.config.is_file()
                && !s.dry_run =>
        {
            log::warn!("{e}");
            log::warn!(
                "GitLab is unreachable; keeping the existing {} (--offline-ok)",
                s.config.display()
            );
            summary(&format!("offline: kept {}", s.config.display()));
            Ok(0)
        }
        other => other,
    }
}

pub fn summary(text: &str) {
    log::info!(target: "gitlab_runner_auth::summary", "{text}");
}

impl<'a> Engine<'a> {
    fn new(s: &'a Settings, client: &'a Client, inputs: Inputs) -> Self {
        Engine {
            s,
            client,
            inputs,
            now: clock::now(),
            tally: Tally::default(),
            plan: Vec::new(),
            deleting: Vec::new(),
            details: BTreeMap::new(),
            created: Vec::new(),
            probed: false,
        }
    }

    /// The runners of the existing `config.toml` (none when it is unreadable
    /// TOML: it is then replaced).
    fn existing_runners(&self) -> Result<Vec<ConfigRunner>> {
        let Some(text) = trust::read_text(&self.s.config, Class::Input)? else {
            return Ok(Vec::new());
        };
        match parse_config_runners(&self.s.config, &text) {
            Ok(r) => Ok(r),
            Err(e) => {
                log::warn!("{e}; it will be replaced");
                Ok(Vec::new())
            }
        }
    }

    fn reconcile(&mut self) -> Result<i32> {
        let mut existing = self.existing_runners()?;
        if !self.s.dry_run {
            self.recover_leftovers(&mut existing)?;
        }
        let observed = if self.s.stateless {
            self.observe_gitlab(&existing)?
        } else {
            self.observe(&existing)?
        };
        let have_pat = self.inputs.access.is_some();
        let types: Vec<String> = self.inputs.state.entries.keys().cloned().collect();
        let mut changes = 0;
        for (ty, obs) in types.iter().zip(observed) {
            let entry = &self.inputs.state.entries[ty];
            let action = decide(
                entry,
                &obs,
                self.now,
                self.s.rotate_before.as_secs() as i64,
                have_pat,
            );
            if action != Action::Keep {
                changes += 1;
            }
            if self.s.dry_run {
                self.plan
                    .push(describe(ty, entry, &obs, &action, &self.inputs.host));
            } else {
                self.apply(ty, obs, action)?;
            }
        }
        let wrote = self.write_config(&existing)?;
        changes += self.reconcile_tags();
        self.prune()?;
        changes += self.deleting.len();
        if self.s.dry_run {
            println!(
                "plan for {} against {}:",
                self.s.config.display(),
                self.s.api_url.as_deref().unwrap_or("?")
            );
            for line in &self.plan {
                println!("{line}");
            }
            let pending = changes > 0 || wrote;
            summary(&format!(
                "plan: {}",
                if pending {
                    "changes pending"
                } else {
                    "nothing to do"
                }
            ));
            return Ok(if pending { 2 } else { 0 });
        }
        let t = &self.tally;
        let counts = [
            (t.verified, "verified"),
            (t.created, "created"),
            (t.rotated, "rotated"),
            (t.healed, "healed"),
            (t.adopted, "adopted"),
            (t.took_over, "taken over"),
            (t.updated, "updated"),
            (t.deleted, "deleted"),
        ];
        let done: Vec<String> = counts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        summary(&format!(
            "{} runner{} ok ({}); {} {}",
            types.len(),
            if types.len() == 1 { "" } else { "s" },
            if done.is_empty() {
                "nothing to do".to_string()
            } else {
                done.join(", ")
            },
            self.s.config.display(),
            if wrote { "written" } else { "unchanged" }
        ));
        Ok(0)
    }

    fn apply(&mut self, ty: &str, obs: Observed, action: Action) -> Result<()> {
        let (token, id, expires_at, obtained_at) = match &obs {
            Observed::Valid {
                token,
                id,
                expires_at,
                obtained_at,
                ..
            } => (Some(token.clone()), *id, *expires_at, *obtained_at),
            _ => (None, None, None, None),
        };
        if matches!(
            action,
            Action::Rotate { .. } | Action::Heal { .. } | Action::Adopt
        ) {
            self.require_known_owner(ty, id)?;
        }
        match action {
            Action::Keep => Ok(()),
            Action::Record | Action::Adopt => {
                let adopt = action == Action::Adopt;
                let e = self.entry(ty);
                if adopt {
                    e.token = token;
                }
                e.id = id.or(e.id);
                e.token_expires_at = expires_at;
                e.token_obtained_at = obtained_at;
                let id = e.id;
                if !adopt {
                    return self.save_state();
                }
                self.tally.adopted += 1;
                self.save_state()?;
                log::info!(
                    "adopted the token gitlab-runner rotated for {ty} runner {}",
                    id.unwrap_or(0)
                );
                Ok(())
            }
            Action::Rotate { reason } => {
                let token = token.ok_or_else(|| Error::internal("rotate without a token"))?;
                match self.rotate(&token, id.or(self.inputs.state.entries[ty].id))? {
                    Some(new) => {
                        self.store(ty, new)?;
                        self.tally.rotated += 1;
                        log::info!(
                            "rotated {ty} runner {} token ({reason})",
                            self.entry(ty).id.unwrap_or(0)
                        );
                        Ok(())
                    }
                    None => {
                        log::warn!(
                            "{ty} runner: GitLab refused to rotate the token; treating it as invalid"
                        );
                        let entry = self.inputs.state.entries[ty].clone();
                        let next = decide(
                            &entry,
                            &Observed::Invalid,
                            self.now,
                            0,
                            self.inputs.access.is_some(),
                        );
                        self.apply(ty, Observed::Invalid, next)
                    }
                }
            }
            Action::Heal { id } => {
                let pat = self
                    .inputs
                    .access
                    .clone()
                    .ok_or_else(|| Error::internal("heal without access token"))?;
                match self.reset_by_id(&pat, id)? {
                    ResetById::Reset(new) => {
                        self.store(ty, new)?;
                        self.tally.healed += 1;
                        log::info!("healed {ty} runner {id}: reset its token by id");
                        Ok(())
                    }
                    ResetById::NoRunner => {
                        log::info!(
                            "{ty} runner {id} no longer exists in GitLab; creating a new one"
                        );
                        self.apply(ty, Observed::Invalid, Action::Create { orphan: None })
                    }
                    ResetById::Unsupported => {
                        log::warn!(
                            "this GitLab cannot reset a runner's token by id (before 14.3); creating a new {ty} runner"
                        );
                        self.apply(ty, Observed::Invalid, Action::Create { orphan: Some(id) })
                    }
                }
            }
            Action::Create { orphan } => {
                // said before the create: a run killed after it still said it
                if let Some(old) = orphan {
                    log::warn!(
                        "creating a new {ty} runner: the old {ty} runner {old} may remain in GitLab: delete it there (an access-token in the prefix lets this tool heal runners instead)"
                    );
                }
                let new = self.create_runner(ty)?;
                let id = new.id;
                self.store(ty, new)?;
                self.tally.created += 1;
                self.created.extend(id);
                log::info!(
                    "created {ty} runner {} ({}, tags {})",
                    id.map_or("?".into(), |i| i.to_string()),
                    self.inputs.host.description(ty),
                    self.inputs.host.tags(ty).join(",")
                );
                Ok(())
            }
        }
    }

    /// With an access token, a runner's token is changed (rotated, healed,
    /// adopted) only when GitLab showed the runner and it is this host's
    /// (a runner it showed as another host's never gets this far).
    fn require_known_owner(&self, ty: &str, verified_id: Option<u64>) -> Result<()> {
        if self.inputs.access.is_none() || self.s.stateless {
            return Ok(());
        }
        let Some(id) = verified_id.or(self.inputs.state.entries[ty].id) else {
            return Ok(());
        };
        match self.details.get(&id) {
            Some(Ok(Some(d))) => {
                let desc = d.description.as_deref().unwrap_or("");
                if self.inputs.host.owns(desc, &d.tag_list, ty) {
                    Ok(())
                } else {
                    Err(Error::denied(format!(
                        "{ty} runner {id} ('{desc}') is another host's: its token is left alone"
                    )))
                }
            }
            Some(Ok(None)) => Ok(()),
            Some(Err(e)) => Err(Error::new(
                e.kind(),
                format!(
                    "cannot tell whether {ty} runner {id} is this host's, so its token is left alone: {e}"
                ),
            )),
            None => Err(Error::internal(format!(
                "{ty} runner {id}: its details were not read"
            ))),
        }
    }

    fn entry(&mut self, ty: &str) -> &mut Entry {
        self.inputs
            .state
            .entries
            .get_mut(ty)
            .expect("runner type from the state")
    }

    /// Store a token GitLab just issued and persist it at once: the old token
    /// is already dead.
    fn store(&mut self, ty: &str, new: IssuedToken) -> Result<()> {
        let now = self.now;
        let e = self.entry(ty);
        if new.id.is_some() {
            e.id = new.id;
        }
        e.token = Some(new.token);
        e.token_expires_at = new.expires_at;
        e.token_obtained_at = Some(now);
        e.create_pending_since = None;
        self.save_state()?;
        // A stop asked for while GitLab issued it ends the run here, with
        // the token safe.
        crate::signals::check("the next step")
    }

    /// Persist the state (stateful mode only).
    fn save_state(&self) -> Result<()> {
        if self.s.stateless {
            return Ok(());
        }
        self.inputs.state.save(&self.s.state)
    }

    /// Render, check, and write `config.toml` when its bytes change (for
    /// `plan`: print the diff). Whether it (would have) changed.
    fn write_config(&mut self, existing: &[ConfigRunner]) -> Result<bool> {
        let placeholders: Vec<(String, String)> = self
            .inputs
            .state
            .entries
            .iter()
            .filter(|(_, e)| e.token.is_none())
            .map(|(t, _)| (t.clone(), format!("<new token for {t}>")))
            .collect();
        let state = &self.inputs.state;
        let rendered = self
            .inputs
            .template
            .render(&self.inputs.host.hostname, |ty| {
                let e = state.entries.get(ty)?;
                let token = match &e.token {
                    Some(t) => t.expose(),
                    None => placeholders.iter().find(|(t, _)| t == ty)?.1.as_str(),
                };
                Some(RunnerValues {
                    token,
                    id: e.id,
                    token_obtained_at: e.token_obtained_at,
                    token_expires_at: e.token_expires_at,
                })
            })?;
        parse_rendered(self.s, &rendered)?;
        let old = trust::read(&self.s.config, Class::Input)?;
        if old.as_deref() == Some(rendered.as_bytes()) {
            return Ok(false);
        }
        if self.s.dry_run {
            let old_text = String::from_utf8_lossy(old.as_deref().unwrap_or_default()).into_owned();
            let mut secrets: Vec<&str> = state
                .entries
                .values()
                .filter_map(|e| e.token.as_ref())
                .map(Secret::expose)
                .collect();
            secrets.extend(existing.iter().map(|r| r.token.expose()));
            let masked = |t: &str| mask_tokens(t, &secrets);
            self.plan.push(format!(
                "would {} {}:",
                if old.is_some() { "rewrite" } else { "create" },
                self.s.config.display()
            ));
            for line in crate::diff::lines(&masked(&old_text), &masked(&rendered), 3) {
                self.plan.push(format!("  {line}"));
            }
            return Ok(true);
        }
        fsutil::write_atomic(&self.s.config, rendered.as_bytes())?;
        log::info!("wrote {}", self.s.config.display());
        Ok(true)
    }
}
