// SPDX-License-Identifier: MIT
//! `Args` → validated `Settings`: paths, the API base URL, durations, mode.

use crate::cli::{Args, Command};
use crate::clock::parse_duration;
use crate::error::{Error, Result};
use std::path::PathBuf;
use std::time::Duration;

/// How `admin-token` creates runners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    Auto,
    Legacy,
    UserRunners,
}

impl Registration {
    /// Whether `admin-token` creates runners with `POST /user/runners`
    /// (else `POST /runners`), given whether it is an access token.
    pub fn user_runners(self, access_token: bool) -> bool {
        match self {
            Registration::Legacy => false,
            Registration::UserRunners => true,
            Registration::Auto => access_token,
        }
    }
}

/// Which kind of runner to create, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Instance,
    Group(u64),
    Project(u64),
}

impl Scope {
    pub fn runner_type(self) -> &'static str {
        match self {
            Scope::Instance => "instance_type",
            Scope::Group(_) => "group_type",
            Scope::Project(_) => "project_type",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub command: Command,
    pub preview: bool,
    /// `https://host/api/v4`; `None` when not configured.
    pub api_root: Option<String>,
    /// `https://host`, for messages.
    pub gitlab_url: Option<String>,
    pub prefix: PathBuf,
    pub config_path: PathBuf,
    pub template_path: PathBuf,
    pub state_path: PathBuf,
    pub lock_path: PathBuf,
    pub system_id_path: PathBuf,
    pub credentials_dir: Option<PathBuf>,
    pub stateless: bool,
    pub hostname: Option<String>,
    pub tags: Vec<String>,
    pub registration: Registration,
    pub scope: Scope,
    pub prune: bool,
    pub max_delete: usize,
    pub offline_ok: bool,
    pub rotate_before: Duration,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub wait: Duration,
    /// `--spread`: `run` waits a random time up to this before its first
    /// request to GitLab.
    pub spread: Duration,
    pub json: bool,
    /// `import`: the runner type of each `[[runners]]`, in order.
    pub types: Vec<String>,
    /// `import`: overwrite an existing template and state.
    pub force: bool,
    /// `setup --uninstall`.
    pub uninstall: bool,
    /// Prometheus textfile to write after `run` and `status`.
    pub metrics_path: Option<PathBuf>,
    /// `--auto-tags`, as given (arch, os, gpu, env:NAME).
    pub auto_tags: Vec<String>,
    /// Warn when an access token expires within this.
    pub warn_before: Duration,
    /// The root host facts are read under (`/`; tests point it elsewhere).
    pub sysroot: PathBuf,
    /// `--allow-http`: plain `http://` to a host that is not loopback.
    pub allow_http: bool,
    /// Several GitLabs: the one these settings are for (`None`: the only
    /// one, `--api-url`'s, running every type as always).
    pub gitlab: Option<GitLab>,
}

/// One GitLab of several (`reconcile::gitlabs`): which runner types are
/// its, and where its credentials are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitLab {
    /// `https://host[:port][/path]`: the `url` of its `[[runners]]` blocks
    /// (`--api-url`'s for the primary).
    pub url: String,
    /// `host[:port]` as its blocks' `url` writes it; `None` for
    /// `--api-url`'s GitLab, whose token files are the prefix's own.
    pub authority: Option<String>,
    /// The runner types whose `[[runners]]` blocks name this GitLab.
    pub types: std::collections::BTreeSet<String>,
    /// Every GitLab's url, `--api-url`'s first: a block naming one of them
    /// is no stranger.
    pub all: Vec<String>,
}

impl GitLab {
    /// Where this GitLab's token files are: `<prefix>/<authority>`, or the
    /// prefix itself.
    pub fn token_dir(&self, prefix: &std::path::Path) -> PathBuf {
        match &self.authority {
            Some(a) => prefix.join(a),
            None => prefix.to_path_buf(),
        }
    }

    /// The shown name of this GitLab: its url.
    pub fn name(&self) -> &str {
        &self.url
    }
}

/// The name prefix of another GitLab's token files in
/// `$CREDENTIALS_DIRECTORY`: `LoadCredential=` splits at `:`, so
/// `host:port` is written `host_port` (`gitlab.example.com_8443.admin-token`).
pub fn credential_name(authority: &str) -> String {
    authority.replace(':', "_")
}

pub const DEFAULT_PREFIX: &str = "/etc/gitlab-runner";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);
pub const DEFAULT_WARN_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// The longest part of a refused value an error shows.
const SHOWN_MAX: usize = 80;

/// A refused value as an error shows it: escaped as a Rust string literal
/// (a newline is `\n`, never a line break in the journal) and cut after
/// [`SHOWN_MAX`] characters.
pub fn escaped(v: &str) -> String {
    let head: String = v.chars().take(SHOWN_MAX).collect();
    if head.len() < v.len() {
        format!("{head:?}…")
    } else {
        format!("{head:?}")
    }
}

/// A character a URL may hold unescaped (RFC 3986: unreserved, reserved
/// and `%`), but the quote `'`. Everything else (controls, whitespace,
/// `"`, `'`, `{`, `}`, `\`, `<`, `>`, `^`, `` ` ``, `|`, non-ASCII) would
/// also break the settings file and the template setup writes it into.
fn url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&()*+,;=%".contains(c)
}

/// Split a user-given GitLab URL into (`https://host`, `https://host/api/v4`).
pub fn normalize_api_url(url: &str) -> Result<(String, String)> {
    if let Some(c) = url.chars().find(|c| !url_char(*c)) {
        return Err(Error::usage(format!(
            "invalid --api-url {}: {c:?} cannot stand unescaped in a URL",
            escaped(url)
        )));
    }
    let trimmed = url.trim_end_matches('/');
    let base = trimmed
        .strip_suffix("/api/v4")
        .unwrap_or(trimmed)
        .trim_end_matches('/');
    let rest = base
        .strip_prefix("https://")
        .or_else(|| base.strip_prefix("http://"))
        .ok_or_else(|| {
            Error::usage(format!(
                "invalid --api-url '{url}': expected https://host, https://host/ or https://host/api/v4"
            ))
        })?;
    if rest.is_empty() || rest.contains(['?', '#']) {
        return Err(Error::usage(format!("invalid --api-url '{url}'")));
    }
    if rest
        .split('/')
        .next()
        .is_some_and(|authority| authority.contains('@'))
    {
        return Err(Error::usage(
            "invalid --api-url: credentials in the URL are not supported; tokens go in token files",
        ));
    }
    Ok((base.to_string(), format!("{base}/api/v4")))
}

/// The host of `host[:port]/path` (IPv6 literals keep their brackets).
fn host_of(authority_and_path: &str) -> &str {
    let authority = authority_and_path.split('/').next().unwrap_or("");
    match authority.strip_prefix('[') {
        Some(v6) => v6
            .split(']')
            .next()
            .map_or("", |h| &authority[..h.len() + 2]),
        None => authority.split(':').next().unwrap_or(""),
    }
}

/// 127.0.0.0/8, ::1 and localhost.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host of a plain `http://` URL to a host that is not loopback: tokens
/// sent there cross the network unencrypted.
pub fn plain_http_host(url: &str) -> Option<&str> {
    let host = host_of(url.strip_prefix("http://")?);
    (!is_loopback(host)).then_some(host)
}

/// The refusal of plain `http://` to a host that is not loopback, unless
/// `--allow-http`: tokens would cross the network in clear.
pub fn plain_http_refused(api_base: &str, allow_http: bool) -> Option<Error> {
    let host = plain_http_host(api_base).filter(|_| !allow_http)?;
    Some(Error::config(format!(
        "refusing plain http:// to {host}: tokens would cross the network unencrypted; use https:// or pass --allow-http"
    )))
}

/// The longest `--wait` and `--timeout`: a boot never waits longer.
pub const MAX_WAIT: Duration = Duration::from_secs(7 * 86_400);
/// The longest `--spread`: an hour (a start spread wider than
/// `TimeoutStartSec=` is killed by systemd; doctor compares them).
pub const MAX_SPREAD: Duration = Duration::from_secs(3600);
/// The longest `--rotate-before`: ten years, past any token lifetime.
pub const MAX_ROTATE_BEFORE: Duration = Duration::from_secs(3650 * 86_400);

/// A duration option, at most `max` (shown in days in the message).
/// An invalid option value as an error quotes it: whole when short, else
/// cut (a token pasted into the wrong variable must not reach the journal).
pub fn shown(v: &str) -> String {
    if v.chars().count() <= 20 {
        return v.to_string();
    }
    let head: String = v.chars().take(6).collect();
    format!("{head}…")
}

fn duration(name: &str, value: Option<&str>, default: Duration, max: Duration) -> Result<Duration> {
    let Some(v) = value else {
        return Ok(default);
    };
    let d = parse_duration(v).ok_or_else(|| {
        Error::usage(format!(
            "invalid {name} '{}': expected a duration such as 30s, 5m, 2h, 7d",
            shown(v)
        ))
    })?;
    if d > max {
        let most = match max.as_secs() {
            s if s % 86_400 == 0 => format!("{}d", s / 86_400),
            s if s % 3600 == 0 => format!("{}h", s / 3600),
            s => format!("{s}s"),
        };
        return Err(Error::usage(format!(
            "invalid {name} '{}': at most {most}",
            shown(v)
        )));
    }
    Ok(d)
}

fn id(name: &str, value: Option<&str>) -> Result<Option<u64>> {
    value
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                Error::usage(format!(
                    "invalid {name} '{}': expected a numeric id",
                    shown(v)
                ))
            })
        })
        .transpose()
}

impl Settings {
    /// The longest a `run` takes: the spread, the lock wait and every
    /// request within `--wait` and one `--timeout`, then a call that issues
    /// a token, already sent, waits for its answer.
    pub fn longest_run(&self) -> Duration {
        self.spread + self.wait + self.timeout + crate::gitlab::issuing_timeout(self.timeout)
    }

    pub fn from_args(a: &Args, credentials_dir: Option<PathBuf>) -> Result<Settings> {
        let (gitlab_url, api_root) = match &a.api_url {
            Some(u) => {
                let (url, base) = normalize_api_url(u)?;
                if let Some(e) = plain_http_refused(&base, a.allow_http) {
                    return Err(e);
                }
                (Some(url), Some(base))
            }
            None => (None, None),
        };
        let prefix = a
            .prefix
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PREFIX));
        let config_path = a
            .config
            .clone()
            .unwrap_or_else(|| prefix.join("config.toml"));
        let system_id_path = config_path
            .parent()
            .map(|d| d.join(".runner_system_id"))
            .unwrap_or_else(|| PathBuf::from(".runner_system_id"));
        let registration = match a.registration.as_deref() {
            None | Some("auto") => Registration::Auto,
            Some("legacy") => Registration::Legacy,
            Some("user-runners") => Registration::UserRunners,
            Some(v) => {
                return Err(Error::usage(format!(
                    "invalid --registration '{}': expected auto, legacy or user-runners",
                    shown(v)
                )));
            }
        };
        let group = id("--group-id", a.group_id.as_deref())?;
        let project = id("--project-id", a.project_id.as_deref())?;
        let scope = match a.runner_type.as_deref() {
            None | Some("instance_type") => Scope::Instance,
            Some("group_type") => Scope::Group(
                group.ok_or_else(|| Error::usage("--runner-type group_type needs --group-id"))?,
            ),
            Some("project_type") => Scope::Project(
                project
                    .ok_or_else(|| Error::usage("--runner-type project_type needs --project-id"))?,
            ),
            Some(v) => {
                return Err(Error::usage(format!(
                    "invalid --runner-type '{}': expected instance_type, group_type or project_type",
                    shown(v)
                )));
            }
        };
        let max_delete = match a.max_delete.as_deref() {
            None => 3,
            Some(v) => v.trim().parse().map_err(|_| {
                Error::usage(format!(
                    "invalid --max-delete '{}': expected a number",
                    shown(v)
                ))
            })?,
        };
        if let Some(h) = &a.hostname {
            crate::host::check_tag("--hostname", h)?;
        }
        for t in &a.tags {
            crate::host::check_tag("--tag", t)?;
        }
        Ok(Settings {
            command: a.command,
            preview: a.dry_run || a.command == Command::Plan,
            api_root,
            gitlab_url,
            template_path: a
                .template
                .clone()
                .unwrap_or_else(|| prefix.join("config.template")),
            state_path: prefix.join("runner-data.json"),
            lock_path: prefix.join(".gitlab-runner-auth.lock"),
            system_id_path,
            config_path,
            prefix,
            credentials_dir,
            stateless: a.stateless,
            hostname: a.hostname.clone(),
            tags: a.tags.clone(),
            registration,
            scope,
            prune: a.prune,
            max_delete,
            offline_ok: a.offline_ok,
            rotate_before: duration(
                "--rotate-before",
                a.rotate_before.as_deref(),
                Duration::ZERO,
                MAX_ROTATE_BEFORE,
            )?,
            ca_file: a.ca_file.clone(),
            timeout: duration("--timeout", a.timeout.as_deref(), DEFAULT_TIMEOUT, MAX_WAIT)?,
            wait: duration("--wait", a.wait.as_deref(), DEFAULT_WAIT, MAX_WAIT)?,
            spread: duration("--spread", a.spread.as_deref(), Duration::ZERO, MAX_SPREAD)?,
            json: a.json,
            types: a.types.clone(),
            force: a.force,
            uninstall: a.uninstall,
            metrics_path: a.metrics_file.clone(),
            auto_tags: a
                .auto_tags
                .as_deref()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect(),
            warn_before: duration(
                "--warn-before",
                a.warn_before.as_deref(),
                DEFAULT_WARN_BEFORE,
                MAX_ROTATE_BEFORE,
            )?,
            allow_http: a.allow_http,
            gitlab: None,
            sysroot: a.sysroot.clone().unwrap_or_else(|| PathBuf::from("/")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_url_forms() {
        for u in [
            "https://gitlab.example.com",
            "https://gitlab.example.com/",
            "https://gitlab.example.com/api/v4",
            "https://gitlab.example.com/api/v4/",
        ] {
            assert_eq!(
                normalize_api_url(u).unwrap(),
                (
                    "https://gitlab.example.com".to_string(),
                    "https://gitlab.example.com/api/v4".to_string()
                ),
                "{u}"
            );
        }
        assert_eq!(
            normalize_api_url("http://127.0.0.1:8080/gitlab/")
                .unwrap()
                .1,
            "http://127.0.0.1:8080/gitlab/api/v4"
        );
        for bad in [
            "gitlab.example.com",
            "ftp://x",
            "https://",
            "https://x?y",
            "https://u:p@x/",
        ] {
            assert_eq!(normalize_api_url(bad).unwrap_err().exit_code(), 64, "{bad}");
        }
    }

    #[test]
    fn api_url_characters_a_url_cannot_hold_unescaped() {
        let cases = [
            (
                "https://x\nHTTPS_PROXY=http://evil:3128",
                r#"invalid --api-url "https://x\nHTTPS_PROXY=http://evil:3128": '\n' cannot stand unescaped in a URL"#,
            ),
            (
                " https://x",
                r#"invalid --api-url " https://x": ' ' cannot stand unescaped in a URL"#,
            ),
            (
                "https://x/\"}",
                r#"invalid --api-url "https://x/\"}": '"' cannot stand unescaped in a URL"#,
            ),
            (
                "https://x/'",
                r#"invalid --api-url "https://x/'": '\'' cannot stand unescaped in a URL"#,
            ),
            (
                "https://x/{a}",
                r#"invalid --api-url "https://x/{a}": '{' cannot stand unescaped in a URL"#,
            ),
            (
                "https://x\\y",
                r#"invalid --api-url "https://x\\y": '\\' cannot stand unescaped in a URL"#,
            ),
            (
                "https://x\ty",
                r#"invalid --api-url "https://x\ty": '\t' cannot stand unescaped in a URL"#,
            ),
            (
                "https://gitlab.exämple.com",
                r#"invalid --api-url "https://gitlab.exämple.com": 'ä' cannot stand unescaped in a URL"#,
            ),
        ];
        for (url, want) in cases {
            let e = normalize_api_url(url).unwrap_err();
            assert_eq!(e.exit_code(), 64, "{url:?}");
            assert_eq!(e.to_string(), want);
        }
        // cut after 80 characters
        let long = format!("https://x/{}\n", "a".repeat(100));
        let e = normalize_api_url(&long).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "invalid --api-url \"https://x/{}\"…: '\\n' cannot stand unescaped in a URL",
                "a".repeat(70)
            )
        );
        // what a URL may hold stays accepted
        assert_eq!(
            normalize_api_url("https://[::1]:8443/git-lab_~.x/%7Eme/")
                .unwrap()
                .1,
            "https://[::1]:8443/git-lab_~.x/%7Eme/api/v4"
        );
    }

    #[test]
    fn plain_http_only_to_loopback_or_with_allow_http() {
        // (URL, allowed without --allow-http, host named in the refusal)
        let cases = [
            ("https://gitlab.example.com/api/v4", true, ""),
            ("https://10.0.0.1:8443/api/v4", true, ""),
            ("http://127.0.0.1:8080/api/v4", true, ""),
            ("http://127.1.2.3/api/v4", true, ""),
            ("http://localhost:80/x/api/v4", true, ""),
            ("http://LocalHost/api/v4", true, ""),
            ("http://[::1]:8080/api/v4", true, ""),
            ("http://[::1]/api/v4", true, ""),
            (
                "http://gitlab.example.com/api/v4",
                false,
                "gitlab.example.com",
            ),
            (
                "http://gitlab.example.com:8080/api/v4",
                false,
                "gitlab.example.com",
            ),
            ("http://127.example.com/api/v4", false, "127.example.com"),
            ("http://127.0.0.1.nip.io/api/v4", false, "127.0.0.1.nip.io"),
            (
                "http://localhost.example.com/api/v4",
                false,
                "localhost.example.com",
            ),
            ("http://10.0.0.1/api/v4", false, "10.0.0.1"),
            ("http://[2001:db8::1]:80/api/v4", false, "[2001:db8::1]"),
            (
                "http://[::ffff:127.0.0.1]/api/v4",
                false,
                "[::ffff:127.0.0.1]",
            ),
            ("http://0.0.0.0/api/v4", false, "0.0.0.0"),
        ];
        for (url, allowed, host) in cases {
            assert!(plain_http_refused(url, true).is_none(), "{url}");
            match plain_http_refused(url, false) {
                None => assert!(allowed, "{url} should be refused"),
                Some(e) => {
                    assert!(!allowed, "{url} should be allowed: {e}");
                    assert_eq!(e.exit_code(), 78, "{url}");
                    assert_eq!(
                        e.to_string(),
                        format!(
                            "refusing plain http:// to {host}: tokens would cross the network unencrypted; use https:// or pass --allow-http"
                        )
                    );
                }
            }
            assert_eq!(plain_http_host(url).is_none(), allowed, "{url}");
        }
        let refused = Args {
            api_url: Some("http://gitlab.example.com/".into()),
            ..Args::default()
        };
        assert_eq!(
            Settings::from_args(&refused, None).unwrap_err().exit_code(),
            78
        );
        let allowed = Args {
            allow_http: true,
            ..refused
        };
        let s = Settings::from_args(&allowed, None).unwrap();
        assert_eq!(
            s.api_root.as_deref(),
            Some("http://gitlab.example.com/api/v4")
        );
    }

    #[test]
    fn durations_are_bounded() {
        type Case<'a> = (&'a str, &'a str, Option<u64>);
        let cases: [Case; 15] = [
            ("--wait", "7d", Some(604_800)),
            ("--wait", "1w", Some(604_800)),
            ("--wait", "604801", None),
            ("--wait", "18446744073709551615s", None),
            ("--wait", "18446744073709551616s", None),
            ("--wait", "99999999999999999999999d", None),
            ("--timeout", "99999d", None),
            ("--timeout", "0s", Some(0)),
            ("--rotate-before", "3650d", Some(3650 * 86_400)),
            ("--rotate-before", "3651d", None),
            ("--rotate-before", "18446744073709551615w", None),
            ("--rotate-before", "30d", Some(30 * 86_400)),
            ("--spread", "40s", Some(40)),
            ("--spread", "1h", Some(3600)),
            ("--spread", "3601s", None),
        ];
        for (name, value, want) in cases {
            let mut a = Args::default();
            let field = match name {
                "--wait" => &mut a.wait,
                "--timeout" => &mut a.timeout,
                "--spread" => &mut a.spread,
                _ => &mut a.rotate_before,
            };
            *field = Some(value.to_string());
            let got = Settings::from_args(&a, None);
            match want {
                Some(secs) => {
                    let s = got.unwrap();
                    let d = match name {
                        "--wait" => s.wait,
                        "--timeout" => s.timeout,
                        "--spread" => s.spread,
                        _ => s.rotate_before,
                    };
                    assert_eq!(d.as_secs(), secs, "{name} {value}");
                }
                None => {
                    let e = got.unwrap_err();
                    assert_eq!(e.exit_code(), 64, "{name} {value}");
                    assert!(
                        e.to_string()
                            .starts_with(&format!("invalid {name} '{}': ", shown(value))),
                        "{e}"
                    );
                }
            }
        }
        let mut a = Args {
            wait: Some("8d".into()),
            ..Args::default()
        };
        let e = Settings::from_args(&a, None).unwrap_err();
        assert_eq!(e.to_string(), "invalid --wait '8d': at most 7d");
        a.wait = None;
        a.rotate_before = Some("5000d".into());
        let e = Settings::from_args(&a, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid --rotate-before '5000d': at most 3650d"
        );
    }

    #[test]
    fn defaults_and_validation() {
        let s = Settings::from_args(&Args::default(), None).unwrap();
        assert_eq!(
            s.config_path,
            PathBuf::from("/etc/gitlab-runner/config.toml")
        );
        assert_eq!(
            s.system_id_path,
            PathBuf::from("/etc/gitlab-runner/.runner_system_id")
        );
        assert_eq!(s.scope, Scope::Instance);
        assert_eq!(s.max_delete, 3);
        assert!(s.api_root.is_none());
        let bad = [
            Args {
                runner_type: Some("group_type".into()),
                ..Args::default()
            },
            Args {
                registration: Some("x".into()),
                ..Args::default()
            },
            Args {
                timeout: Some("soon".into()),
                ..Args::default()
            },
            Args {
                group_id: Some("abc".into()),
                ..Args::default()
            },
            Args {
                tags: vec!["a,b".into()],
                ..Args::default()
            },
            Args {
                tags: vec![" ".into()],
                ..Args::default()
            },
            Args {
                tags: vec!["a\u{1b}b".into()],
                ..Args::default()
            },
            Args {
                hostname: Some("".into()),
                ..Args::default()
            },
            Args {
                hostname: Some("node 12".into()),
                ..Args::default()
            },
            Args {
                hostname: Some("a,b".into()),
                ..Args::default()
            },
            Args {
                hostname: Some("x".repeat(256)),
                ..Args::default()
            },
        ];
        for a in bad {
            assert_eq!(
                Settings::from_args(&a, None).unwrap_err().exit_code(),
                64,
                "{a:?}"
            );
        }
        let a = Args {
            runner_type: Some("project_type".into()),
            project_id: Some("42".into()),
            dry_run: true,
            ..Args::default()
        };
        let s = Settings::from_args(&a, None).unwrap();
        assert_eq!(s.scope, Scope::Project(42));
        assert!(s.preview);
    }
}
