// SPDX-License-Identifier: MIT
//! GitLab: the proxy in use, GitLab reachable, its TLS certificate trusted
//! (naming the CAs), the API root found (a 404 here is a wrong
//! `--api-url`), each access token's validity, scopes and expiry
//! (`GET /personal_access_tokens/self`, judged by the rules of `run`'s
//! warnings) and each runner token's verify, as `status` makes it. Only
//! reads and `POST /runners/verify` are sent; retries are bounded to 10 s.

use super::Report;
use super::files::Found;
use super::install::{PROXY_VARS, SETTINGS_FILES, Service};
use super::tokens::creates_with_access_token;
use crate::clock;
use crate::error::{Error, Kind};
use crate::gitlab::{self, Client, Verified};
use crate::reconcile::{AccessToken, token_expiry, token_warnings};
use crate::secret::{Secret, TokenKind};
use crate::settings::Settings;
use std::path::PathBuf;
use std::time::Duration;

/// The most `doctor` waits for one request, and for its retries.
const LIMIT: Duration = Duration::from_secs(10);

/// The token of the probe: no runner has it, so GitLab's API answers 403.
const PROBE: &str = "gitlab-runner-auth-doctor-probe";

/// The CAs the client trusts, for a message.
fn cas(s: &Settings) -> String {
    let system = gitlab::system_ca_bundle().map_or_else(
        || "the bundled Mozilla roots (no system CA bundle found)".to_string(),
        |p| format!("the system CA bundle {}", p.display()),
    );
    match &s.ca_file {
        Some(f) => format!("{system} and --ca-file {}", f.display()),
        None => system,
    }
}

pub fn check(s: &Settings, f: &Found, svc: &Service, r: &mut Report) {
    let settings_file = svc
        .file
        .clone()
        .unwrap_or_else(|| s.sysroot.join(SETTINGS_FILES[0]));
    let Some(api) = s.api_root.as_deref() else {
        r.fail(
            "api url",
            Kind::Config,
            "no GitLab API URL: this tool does nothing (not configured)",
            format!(
                "echo '{}=https://gitlab.example.com' >> {} (your GitLab's URL), or pass --api-url",
                crate::cli::env_name("api-url"),
                settings_file.display()
            ),
        );
        return;
    };
    let host = api.split('/').nth(2).unwrap_or(api).to_string();
    proxy(api, &host, svc, &settings_file, r);
    let client = match Client::new(
        api,
        s.timeout.min(LIMIT),
        s.wait.min(LIMIT),
        s.ca_file.as_deref(),
    ) {
        Ok(c) => c,
        Err(e) => {
            r.error("client", &e, None);
            return;
        }
    };
    if !reach(s, api, &host, &client, r) {
        r.skip("tokens", "not checked: GitLab's API was not reached");
        return;
    }
    if !f.trusted {
        r.skip(
            "tokens",
            "not sent to GitLab: a directory fails the trust rules (see files)",
        );
        return;
    }
    access_tokens(s, f, &client, r);
    runner_tokens(s, f, &client, r);
}

/// The proxy line: what the client connects through, and whether the
/// settings file (which this run did not read into its environment) sets
/// another one.
fn proxy(api: &str, host: &str, svc: &Service, file: &std::path::Path, r: &mut Report) {
    let env = gitlab::EnvProxy::read();
    if let Some(text) = env.unusable_text() {
        r.fail(
            "proxy",
            Kind::Config,
            text,
            "unset those variables, or set them to an http:// proxy (HTTPS_PROXY=http://proxy:3128; NO_PROXY for exemptions)",
        );
    }
    let var = env.proxy.as_ref().map(|(_, v)| *v);
    match (env.for_url(api), var) {
        (Some(p), Some(v)) => r.ok("proxy", format!("{p} (from {v})")),
        (Some(p), None) => r.ok("proxy", p),
        (None, Some(v)) => r.ok("proxy", format!("none: NO_PROXY exempts {host} from {v}")),
        (None, None) if !env.unusable.is_empty() => r.ok("proxy", "none: a direct connection"),
        (None, None) => r.ok(
            "proxy",
            "none: no ALL_PROXY, HTTPS_PROXY or HTTP_PROXY in this environment",
        ),
    }
    let differ: Vec<String> = svc
        .vars
        .iter()
        .filter(|(k, v)| {
            PROXY_VARS.contains(&k.as_str()) && std::env::var(k).unwrap_or_default() != **v
        })
        .map(|(k, v)| format!("{k}={}", crate::secret::url_without_credentials(v)))
        .collect();
    if !differ.is_empty() {
        r.warn(
            "proxy",
            format!(
                "{} sets {}, which this run's environment does not: the service connects another way than these checks did",
                file.display(),
                differ.join(", ")
            ),
            format!(
                "check with the service's environment: (set -a; . {}; gitlab-runner-auth doctor)",
                file.display()
            ),
        );
    }
}

/// Reachable, TLS, the API root: the probe `POST /runners/verify`, which
/// GitLab answers 403 for a token no runner has. Whether the API answered.
fn reach(s: &Settings, api: &str, host: &str, client: &Client, r: &mut Report) -> bool {
    let https = api.starts_with("https://");
    let probe = client.verify(&Secret::new(PROBE), None);
    let e = match probe {
        Ok(_) => {
            r.ok("reachable", format!("{host} answered"));
            tls_ok(s, host, https, r);
            r.ok(
                "api root",
                format!("{api} is GitLab's API: POST /runners/verify answered as GitLab does (403 for an unknown token)"),
            );
            return true;
        }
        Err(e) => e,
    };
    let msg = e.to_string();
    if e.kind() == Kind::Denied && msg.contains("TLS certificate") {
        r.ok("reachable", format!("{host} answered the TLS handshake"));
        r.fail(
            "tls",
            Kind::Denied,
            format!("the certificate of {host} is not trusted by {}: {msg}", cas(s)),
            "install the site's CA in the system bundle (update-ca-certificates; update-ca-trust on RHEL), or set GITLAB_RUNNER_AUTH_CA_FILE=/path/to/ca.pem",
        );
        r.skip("api root", "not checked: no trusted connection");
        return false;
    }
    if matches!(e.kind(), Kind::Unreachable | Kind::Ambiguous) {
        r.fail(
            "reachable",
            Kind::Unreachable,
            format!("cannot reach {host}: {msg}"),
            format!("check that this host resolves and reaches {host} (DNS, routes, firewall; a proxy in HTTPS_PROXY, exemptions in NO_PROXY)"),
        );
        r.skip("tls", "not checked: GitLab not reached");
        r.skip("api root", "not checked: GitLab not reached");
        return false;
    }
    r.ok("reachable", format!("{host} answered"));
    tls_ok(s, host, https, r);
    api_failed(s, api, &e, r);
    false
}

fn tls_ok(s: &Settings, host: &str, https: bool, r: &mut Report) {
    if https {
        r.ok(
            "tls",
            format!("the certificate of {host} is trusted ({})", cas(s)),
        );
    } else if crate::settings::plain_http_host(&format!("http://{host}")).is_some() {
        r.warn(
            "tls",
            format!("not used: plain http:// to {host} (--allow-http): tokens cross the network unencrypted"),
            "use GitLab's https:// URL in --api-url",
        );
    } else {
        r.ok(
            "tls",
            format!("not used: plain http:// to {host}, a loopback address"),
        );
    }
}

fn api_failed(s: &Settings, api: &str, e: &Error, r: &mut Report) {
    let fix = match s.gitlab.as_ref().filter(|g| g.authority.is_some()) {
        // another GitLab: its API root is its blocks' url + api/v4
        Some(g) => format!(
            "set the url of its [[runners]] blocks in {} ({}) to GitLab's own URL, https://host or https://host/path where GitLab is served under a path: {api}/runners/verify must be GitLab's",
            s.template_path.display(),
            g.url
        ),
        None => format!(
            "set --api-url (GITLAB_RUNNER_AUTH_API_URL) to GitLab's own URL, https://host or https://host/path where GitLab is served under a path: {api}/runners/verify must be GitLab's"
        ),
    };
    r.fail("api root", e.kind(), e.to_string(), fix);
}

/// `GET /personal_access_tokens/self` for `admin-token` (when it is an
/// access token the run creates runners with) and `access-token`.
fn access_tokens(s: &Settings, f: &Found, client: &Client, r: &mut Report) {
    let mut held: Vec<(&'static str, &PathBuf, &Secret)> = Vec::new();
    if let Some((t, path)) = &f.admin {
        let kind = TokenKind::of(t.expose());
        // a kind that fails its file (see tokens) is not sent
        if matches!(kind, TokenKind::Access | TokenKind::Unknown)
            && creates_with_access_token(s, kind)
        {
            held.push(("admin-token", path, t));
        }
    }
    if let Some((t, path)) = &f.access
        && TokenKind::of(t.expose()) == TokenKind::Access
    {
        held.push(("access-token", path, t));
    }
    let now = clock::now();
    let mut asked: Vec<(&Secret, std::result::Result<Option<_>, Error>)> = Vec::new();
    for (role, path, token) in held {
        let i = match asked.iter().position(|(t, _)| *t == token) {
            Some(i) => i,
            None => {
                asked.push((token, client.token_self(token)));
                asked.len() - 1
            }
        };
        let need = if role == "admin-token" {
            "create_runner (or api)"
        } else {
            "api"
        };
        let fix = format!(
            "put a new access token with {need} scope in {} (chmod 600)",
            path.display()
        );
        let info = match &asked[i].1 {
            Err(e) => {
                r.fail(
                    role,
                    e.kind(),
                    format!("GitLab refused {}: {e}", path.display()),
                    fix,
                );
                continue;
            }
            Ok(None) => {
                r.ok(
                    role,
                    format!(
                        "{}: GitLab cannot say its scopes or expiry (before 15.5)",
                        path.display()
                    ),
                );
                continue;
            }
            Ok(Some(info)) => info.clone(),
        };
        if info.active == Some(false) {
            r.fail(
                role,
                Kind::Denied,
                format!(
                    "{}: GitLab says the token is inactive (revoked or expired)",
                    path.display()
                ),
                fix,
            );
            continue;
        }
        let t = AccessToken {
            file: path.clone(),
            role,
            info: Ok(Some(info.clone())),
        };
        let warnings = token_warnings(
            std::slice::from_ref(&t),
            now,
            s.warn_before.as_secs() as i64,
        );
        if warnings.is_empty() {
            let expiry = token_expiry(&t).map_or("never expires".to_string(), |e| {
                format!(
                    "expires {} ({} days left)",
                    clock::format(e),
                    (e - now).div_euclid(86_400)
                )
            });
            r.ok(
                role,
                format!(
                    "{}: valid, scopes {}, {expiry}",
                    path.display(),
                    crate::untrusted::shown(&info.scopes.join(","))
                ),
            );
        }
        for w in warnings {
            if w.contains(" has scopes ") || w.contains(" expired on ") {
                r.fail(role, Kind::Denied, w, fix.clone());
            } else {
                r.warn(role, w, fix.clone());
            }
        }
    }
}

/// Each runner token verified, as `status` does: the state's (stateful)
/// or `config.toml`'s (stateless).
fn runner_tokens(s: &Settings, f: &Found, client: &Client, r: &mut Report) {
    let sid = crate::host::system_id(&s.system_id_path);
    let heal = if f.access.is_some() || f.unread("access-token").is_some() {
        "systemctl restart gitlab-runner: the run heals it by runner id with access-token (same runner, new token)"
    } else if f.admin.is_some() || f.unread("admin-token").is_some() {
        "systemctl restart gitlab-runner: the run creates a new runner with admin-token and names the old one to delete"
    } else {
        "put an access token with create_runner scope in admin-token, then systemctl restart gitlab-runner"
    };
    let mut tokens: Vec<(String, Option<u64>, Secret)> = Vec::new();
    if s.stateless {
        for c in &f.existing {
            tokens.push((String::new(), c.id, c.token.clone()));
        }
    } else if let Some(st) = &f.state {
        for (ty, e) in &st.entries {
            match &e.token {
                Some(t) => tokens.push((ty.clone(), e.id, t.clone())),
                None => r.ok(
                    &format!("{ty} runner"),
                    "no token yet: the next run creates this runner",
                ),
            }
        }
    }
    for (ty, id, token) in tokens {
        let name = if s.stateless {
            "runner token".to_string()
        } else {
            format!("{ty} runner")
        };
        let shown_id = |id: Option<u64>| id.map_or(String::new(), |i| format!(" {i}"));
        match client.verify(&token, sid.as_deref()) {
            Ok(Verified::Valid {
                id: got,
                expires_at,
            }) => {
                let expiry = expires_at.map_or("never expires".to_string(), |e| {
                    format!(
                        "expires {} ({} days left)",
                        clock::format(e),
                        (e - clock::now()).div_euclid(86_400)
                    )
                });
                r.ok(
                    &name,
                    format!(
                        "runner{}: token {} valid, {expiry}",
                        shown_id(got.or(id)),
                        token.hint()
                    ),
                );
            }
            Ok(Verified::Invalid) => r.fail(
                &name,
                Kind::Denied,
                format!(
                    "runner{}: GitLab rejected its token {} (deleted, expired or reset elsewhere)",
                    shown_id(id),
                    token.hint()
                ),
                heal,
            ),
            Err(e) => r.error(&name, &e, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_credentials_are_not_shown() {
        let cases = [
            ("http://user:secret@proxy:3128", "http://…@proxy:3128"),
            ("http://proxy:3128", "http://proxy:3128"),
            ("user:secret@proxy:3128", "proxy:3128"),
        ];
        for (url, want) in cases {
            assert_eq!(crate::secret::url_without_credentials(url), want);
        }
    }

    #[test]
    fn token_warnings_are_told_apart_by_their_words() {
        // the classification above depends on the words of token_warnings
        use crate::gitlab::api::TokenSelf;
        let now = 1_800_000_000;
        let token = |scopes: &[&str], expires_at: Option<&str>| AccessToken {
            file: PathBuf::from("/p/access-token"),
            role: "access-token",
            info: Ok(Some(TokenSelf {
                name: None,
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                expires_at: expires_at.map(String::from),
                active: Some(true),
            })),
        };
        let soon = clock::format(now + 5 * 86_400);
        let past = clock::format(now - 86_400);
        let w = token_warnings(&[token(&["api"], Some(&soon))], now, 30 * 86_400);
        assert!(w.len() == 1 && w[0].contains(" expires on "), "{w:?}");
        let w = token_warnings(&[token(&["api"], Some(&past))], now, 30 * 86_400);
        assert!(w.len() == 1 && w[0].contains(" expired on "), "{w:?}");
        let w = token_warnings(&[token(&["read_api"], None)], now, 30 * 86_400);
        assert!(w.len() == 1 && w[0].contains(" has scopes "), "{w:?}");
    }
}
