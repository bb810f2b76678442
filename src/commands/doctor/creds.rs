// SPDX-License-Identifier: MIT
//! Token files the unit passes as credentials: the `LoadCredential=` and
//! `LoadCredentialEncrypted=` lines of `gitlab-runner.service` (from
//! `systemctl show`). systemd copies or decrypts them into the service's
//! `$CREDENTIALS_DIRECTORY`, where a run looks before the prefix. `doctor`
//! runs outside the service, without that directory, so it reads each one
//! where the unit loads it from: a plain file under the trust rules, an
//! encrypted one with `systemd-creds decrypt` (as root, the way systemd
//! decrypts it), and says where each token came from.

use super::Report;
use super::files::Found;
use super::install;
use crate::error::Kind;
use crate::secret::{Secret, parse_token};
use crate::settings::Settings;
use crate::trust::{self, Class};
use std::path::{Path, PathBuf};

/// One `LoadCredential=`/`LoadCredentialEncrypted=` of the unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitCredential {
    /// The name in `$CREDENTIALS_DIRECTORY`.
    pub name: String,
    /// As the unit gives it: an absolute path, or a name (a credential
    /// passed to the system, or one in the credstore directories).
    pub source: String,
    pub encrypted: bool,
}

impl UnitCredential {
    /// A line of `systemctl show`: `LoadCredentialEncrypted=NAME:PATH`.
    pub fn parse(key: &str, value: &str) -> Option<Self> {
        let encrypted = match key {
            "LoadCredential" => false,
            "LoadCredentialEncrypted" => true,
            _ => return None,
        };
        let (name, source) = value.split_once(':').unwrap_or((value, ""));
        if name.is_empty() {
            return None;
        }
        Some(UnitCredential {
            name: name.to_string(),
            source: if source.is_empty() { name } else { source }.to_string(),
            encrypted,
        })
    }

    /// `LoadCredentialEncrypted` or `LoadCredential`, without its `=`:
    /// the report masks the value after a key that names a credential.
    pub fn setting(&self) -> &'static str {
        if self.encrypted {
            "LoadCredentialEncrypted"
        } else {
            "LoadCredential"
        }
    }

    /// The file on this host: an absolute source under the sysroot; a
    /// name, the first of the credstore directories that has it (systemd
    /// looks in the `.encrypted` ones first for an encrypted credential).
    fn locate(&self, root: &Path) -> Option<PathBuf> {
        if let Some(abs) = self.source.strip_prefix('/') {
            return Some(root.join(abs));
        }
        let stores: &[&str] = if self.encrypted {
            &[
                "etc/credstore.encrypted",
                "run/credstore.encrypted",
                "usr/lib/credstore.encrypted",
                "etc/credstore",
                "run/credstore",
                "usr/lib/credstore",
            ]
        } else {
            &["etc/credstore", "run/credstore", "usr/lib/credstore"]
        };
        stores
            .iter()
            .map(|d| root.join(d).join(&self.source))
            .find(|p| std::fs::symlink_metadata(p).is_ok())
    }
}

/// The credential the unit passes for token file `name` (the last line
/// for that name wins, as in systemd).
pub fn of<'a>(creds: &'a [UnitCredential], name: &str) -> Option<&'a UnitCredential> {
    creds.iter().rev().find(|c| c.name == name)
}

/// The line for token file `name`, which the unit passes as `c`: where
/// the service's token comes from, and the token itself when doctor can
/// read it (`f.admin`/`f.access`), else why not (`f.unread`).
pub fn check(s: &Settings, c: &UnitCredential, name: &'static str, f: &mut Found, r: &mut Report) {
    let setting = c.setting();
    let unit = install::UNIT;
    let plain_fix = |path: &str| {
        if c.encrypted {
            format!(
                "systemd-creds encrypt --name={name} <file holding the token> {path} (on this host, as root), or remove the {setting} line of {name}"
            )
        } else {
            format!(
                "install -m 600 <file holding the token> {path}, or remove the {setting} line of {name}"
            )
        }
    };
    let Some(path) = c.locate(&s.sysroot) else {
        // neither a path nor in the credstore: a system credential
        r.skip(
            name,
            format!(
                "{} ({setting} of {unit}): not a file here (a credential passed to the system?); not checked",
                c.source
            ),
        );
        f.unread
            .push((name, format!("{unit} gets it from {setting} {}", c.source)));
        return;
    };
    let shown = format!("{} ({setting} of {unit})", path.display());
    let set = |f: &mut Found, t: Secret| {
        let held = Some((t, path.clone()));
        match name {
            "admin-token" => f.admin = held,
            _ => f.access = held,
        }
    };
    if std::fs::symlink_metadata(&path).is_err() {
        r.fail(
            name,
            Kind::Config,
            format!("{shown} does not exist: systemd fails {unit} before this tool runs"),
            plain_fix(&path.display().to_string()),
        );
        f.refused.push(name);
        return;
    }
    if !c.encrypted {
        match trust::read_text(&path, Class::Secret)
            .and_then(|t| t.map(|t| parse_token(&path, &t)).transpose())
        {
            Ok(Some(t)) => {
                r.ok(
                    name,
                    format!(
                        "{shown}: mode {:04o}, no other user can read or change it; systemd copies it into the service's $CREDENTIALS_DIRECTORY",
                        mode_of(&path)
                    ),
                );
                set(f, t);
            }
            Ok(None) => r.fail(
                name,
                Kind::Config,
                format!("{shown} is gone: systemd fails {unit} before this tool runs"),
                plain_fix(&path.display().to_string()),
            ),
            Err(e) => {
                // systemd reads it as root whatever its mode: the service
                // runs, but the token is open to others on disk
                let text = e.to_string();
                let (found, fix) = match text.split_once("; fix it with: ") {
                    Some((a, b)) => (a.to_string(), b.to_string()),
                    None => (text.clone(), plain_fix(&path.display().to_string())),
                };
                r.warn(name, format!("{found} ({setting} of {unit})"), fix);
                f.refused.push(name);
            }
        }
        return;
    }
    // encrypted: decrypted as systemd does, only as root (the host key is
    // root's), never written anywhere
    if trust::effective_uid() != 0 {
        r.ok(
            name,
            format!("{shown}: encrypted; systemd decrypts it into the service's $CREDENTIALS_DIRECTORY (not decrypted here: doctor is not root)"),
        );
        f.unread
            .push((name, format!("encrypted ({shown}) and doctor is not root")));
        return;
    }
    let arg = path.display().to_string();
    match install::run_bounded(
        "systemd-creds",
        &["decrypt", &format!("--name={name}"), &arg, "-"],
    ) {
        Ok(out) => match String::from_utf8(out)
            .map_err(|_| crate::error::Error::data(format!("{shown}: not UTF-8 text")))
            .and_then(|t| parse_token(&path, &t))
        {
            Ok(t) => {
                r.ok(
                    name,
                    format!("{shown}: encrypted; systemd decrypts it into the service's $CREDENTIALS_DIRECTORY (systemd-creds decrypt reads it here)"),
                );
                set(f, t);
            }
            Err(e) => {
                r.error(name, &e, None);
                f.refused.push(name);
            }
        },
        Err(install::RunError::NotRun(e)) => {
            r.ok(
                name,
                format!("{shown}: encrypted; systemd decrypts it into the service's $CREDENTIALS_DIRECTORY (not decrypted here: {e})"),
            );
            f.unread
                .push((name, format!("encrypted ({shown}) and {e}")));
        }
        Err(install::RunError::Failed(e)) => {
            r.fail(
                name,
                Kind::Config,
                format!("{shown} does not decrypt on this host ({e}): systemd fails {unit} before this tool runs"),
                plain_fix(&arg),
            );
            f.refused.push(name);
        }
    }
}

/// A token file of the same name left in the prefix beside the unit's
/// credential: the service never reads it (`$CREDENTIALS_DIRECTORY` comes
/// first), and it keeps the token on disk in the clear.
pub fn shadowed(s: &Settings, c: &UnitCredential, name: &str, r: &mut Report) {
    let file = s.prefix.join(name);
    if std::fs::symlink_metadata(&file).is_err()
        || c.locate(&s.sysroot).is_some_and(|p| same_file(&p, &file))
    {
        return;
    }
    r.warn(
        name,
        format!(
            "{} is not read by {}: its {} line for {name} comes first; this copy only keeps the token on disk",
            file.display(),
            install::UNIT,
            c.setting()
        ),
        format!(
            "rm {} (gitlab-runner-auth-status.service, if its timer is on, needs the same {} line in a drop-in)",
            file.display(),
            c.setting()
        ),
    );
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.mode() & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_show_lines_are_parsed() {
        let c = |name: &str, source: &str, encrypted| UnitCredential {
            name: name.into(),
            source: source.into(),
            encrypted,
        };
        assert_eq!(
            UnitCredential::parse(
                "LoadCredentialEncrypted",
                "admin-token:/etc/credstore.encrypted/gitlab-runner-auth.admin-token"
            ),
            Some(c(
                "admin-token",
                "/etc/credstore.encrypted/gitlab-runner-auth.admin-token",
                true
            ))
        );
        assert_eq!(
            UnitCredential::parse("LoadCredential", "access-token:/root/t"),
            Some(c("access-token", "/root/t", false))
        );
        assert_eq!(
            UnitCredential::parse("LoadCredentialEncrypted", "admin-token"),
            Some(c("admin-token", "admin-token", true)),
            "a name alone: the credstore"
        );
        assert_eq!(UnitCredential::parse("LoadCredential", ""), None);
        assert_eq!(UnitCredential::parse("SetCredential", "a:b"), None);
        let all = [c("a", "/1", false), c("a", "/2", true)];
        assert_eq!(of(&all, "a"), Some(&all[1]), "the last one wins");
        assert_eq!(of(&all, "b"), None);
    }

    #[test]
    fn a_name_is_looked_up_in_the_credstore() {
        let root = std::env::temp_dir().join(format!("gra-creds-{}", std::process::id()));
        std::fs::create_dir_all(root.join("usr/lib/credstore.encrypted")).unwrap();
        std::fs::create_dir_all(root.join("etc/credstore")).unwrap();
        std::fs::write(root.join("usr/lib/credstore.encrypted/t"), "x").unwrap();
        std::fs::write(root.join("etc/credstore/t"), "x").unwrap();
        let c = |encrypted| UnitCredential {
            name: "t".into(),
            source: "t".into(),
            encrypted,
        };
        assert_eq!(
            c(true).locate(&root),
            Some(root.join("usr/lib/credstore.encrypted/t"))
        );
        assert_eq!(c(false).locate(&root), Some(root.join("etc/credstore/t")));
        let missing = UnitCredential {
            source: "u".into(),
            ..c(false)
        };
        assert_eq!(missing.locate(&root), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
