// SPDX-License-Identifier: MIT
//! The token kinds: each token file classified by its prefix (registration
//! token, access token, runner authentication token, another GitLab kind,
//! unknown), and whether that kind fits its file, `--registration` and the
//! mode (`--stateless` needs an access token).

use super::Report;
use super::files::Found;
use crate::error::Kind;
use crate::reconcile::inputs::check_admin_token;
use crate::secret::TokenKind;
use crate::settings::Settings;

/// Does `admin-token` create runners with `POST /user/runners` (an access
/// token), as the run decides?
pub fn creates_with_access_token(s: &Settings, kind: TokenKind) -> bool {
    s.registration.user_runners(kind == TokenKind::Access)
}

pub fn check(s: &Settings, f: &Found, r: &mut Report) {
    admin(s, f, r);
    access(s, f, r);
}

/// Where the token files of the GitLab of `s` are: the prefix, or
/// `<prefix>/<authority>` for another GitLab.
fn token_dir(s: &Settings) -> std::path::PathBuf {
    s.gitlab
        .as_ref()
        .map_or_else(|| s.prefix.clone(), |g| g.token_dir(&s.prefix))
}

fn admin(s: &Settings, f: &Found, r: &mut Report) {
    let file = token_dir(s).join("admin-token");
    let Some((token, path)) = &f.admin else {
        if let Some(why) = f.unread("admin-token") {
            r.skip("admin-token", format!("not classified: {why}"));
            return;
        }
        if f.refused.contains(&"admin-token") {
            r.skip(
                "admin-token",
                "not classified: the file is refused (see above)",
            );
            return;
        }
        // without it no runner can be created: fine only when each has a token
        let all_held = !s.stateless
            && s.state_path.exists()
            && f.state
                .as_ref()
                .is_some_and(|st| st.entries.values().all(|e| e.token.is_some()));
        let what = format!(
            "no admin-token in {}{}",
            token_dir(s).display(),
            if s.credentials_dir.is_some() {
                " or $CREDENTIALS_DIRECTORY"
            } else {
                ""
            }
        );
        let fix = format!(
            "put an access token with create_runner scope (glpat-…) in {} (chmod 600)",
            file.display()
        );
        if all_held {
            r.warn(
                "admin-token",
                format!("{what}: every runner has a token now, but a lost one cannot be replaced"),
                fix,
            );
        } else {
            r.fail(
                "admin-token",
                Kind::Config,
                format!("{what}: the runners without a token cannot be created"),
                fix,
            );
        }
        return;
    };
    let kind = TokenKind::of(token.expose());
    let what = format!("holds {}, {}", token.hint(), kind.describe());
    if let Err(e) = check_admin_token(path, token) {
        r.error("admin-token", &e, None);
        return;
    }
    let access = creates_with_access_token(s, kind);
    match kind {
        TokenKind::Other(_) => r.fail(
            "admin-token",
            Kind::Config,
            format!("{what}, which cannot create runners"),
            format!("put an access token with create_runner scope (glpat-…) in {}", path.display()),
        ),
        TokenKind::Access if !access => r.fail(
            "admin-token",
            Kind::Config,
            format!("{what}, but --registration legacy sends it to POST /runners as a registration token"),
            "drop --registration legacy (GITLAB_RUNNER_AUTH_REGISTRATION), so that auto creates runners with POST /user/runners",
        ),
        TokenKind::Registration if access => r.fail(
            "admin-token",
            Kind::Config,
            format!("{what}, but --registration user-runners needs an access token for POST /user/runners"),
            format!("put an access token with create_runner scope (glpat-…) in {}, or drop --registration user-runners", path.display()),
        ),
        TokenKind::Access | TokenKind::Unknown if access => r.ok(
            "admin-token",
            format!("{what}: creates runners with POST /user/runners"),
        ),
        TokenKind::Unknown => r.ok(
            "admin-token",
            format!("{what}: taken for a registration token, creates runners with POST /runners (the legacy workflow; GitLab 17+ disables it by default)"),
        ),
        _ => r.ok(
            "admin-token",
            format!("{what}: creates runners with POST /runners (the legacy workflow; GitLab 17+ disables it by default)"),
        ),
    }
}

fn access(s: &Settings, f: &Found, r: &mut Report) {
    let Some((token, path)) = &f.access else {
        if let Some(why) = f.unread("access-token") {
            r.skip("access-token", format!("not classified: {why}"));
            return;
        }
        if f.refused.contains(&"access-token") {
            r.skip(
                "access-token",
                "not classified: the file is refused (see above)",
            );
        } else if s.stateless {
            r.fail(
                "access-token",
                Kind::Config,
                format!("--stateless needs an access token (api scope) in {}/access-token to find this host's runners in GitLab", token_dir(s).display()),
                format!("put an access token with api scope (glpat-…) in {}/access-token (chmod 600)", token_dir(s).display()),
            );
        } else {
            r.ok(
                "access-token",
                "none (optional: with one, rejected tokens are healed by runner id, replaced runners deleted and tags kept)",
            );
        }
        return;
    };
    let kind = TokenKind::of(token.expose());
    let what = format!("holds {}, {}", token.hint(), kind.describe());
    if kind == TokenKind::Access {
        r.ok(
            "access-token",
            format!("{what}: heals, lists, tags and deletes runners by id"),
        );
    } else {
        r.fail(
            "access-token",
            Kind::Config,
            format!("{what}, not an access token"),
            format!(
                "put an access token with api scope (glpat-…) in {}",
                path.display()
            ),
        );
    }
}
