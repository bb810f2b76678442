// SPDX-License-Identifier: MIT
//! Secrets: a `Secret` newtype that never prints its value, and reading token
//! files (trimmed, from `$CREDENTIALS_DIRECTORY` first) with permission checks.

use crate::error::{Error, Result};
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A token. `Debug` and `Display` show at most a hint such as `glrt-…abcd`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The real value, for the wire and the files that must hold it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A masked form: the token's known prefix (see [`mask`]) and, for long
    /// tokens, the last four characters.
    pub fn hint(&self) -> String {
        mask(&self.0)
    }
}

/// The prefixes GitLab gives its tokens (gitlab-api.md §1): runner
/// (`glrt-`, `glrtr-`), access, OAuth, feed, mail, trigger, SCIM and deploy
/// tokens, and registration tokens (`GR1348941`). They are not secret.
const TOKEN_PREFIXES: &[&str] = &[
    "glrt-",
    "glrtr-",
    "glpat-",
    "glgat-",
    "glpt-",
    "gloas-",
    "glft-",
    "glimt-",
    "glptt-",
    "glsoat-",
    "gldt-",
    "GR1348941",
];

/// Runner-token partition prefixes (instance, group, project), shown after
/// a known prefix.
const PARTITIONS: &[&str] = &["t1_", "t2_", "t3_"];

/// The length of the part of `value` that [`mask`] may show: a known prefix,
/// optionally preceded by a custom instance prefix (`mycompany-glrt-`) and
/// followed by a partition prefix (`glrt-t3_`); 0 when there is none.
fn shown_prefix_len(value: &str) -> usize {
    let known = |v: &str| {
        TOKEN_PREFIXES
            .iter()
            .find(|p| v.starts_with(*p))
            .map(|p| p.len())
    };
    let custom = || {
        let (word, after) = value.split_once('-')?;
        let is_word = !word.is_empty()
            && word
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let p = TOKEN_PREFIXES
            .iter()
            .find(|p| p.starts_with("gl") && after.starts_with(*p))?;
        is_word.then(|| word.len() + 1 + p.len())
    };
    match known(value).or_else(custom) {
        // the prefixes are ASCII: `n` is a char boundary
        Some(n) => {
            let rest = &value[n..];
            n + PARTITIONS
                .iter()
                .find(|t| rest.starts_with(*t))
                .map_or(0, |t| t.len())
        }
        None => 0,
    }
}

/// Mask any token-like string: its known prefix (only GitLab's own, see
/// `TOKEN_PREFIXES`) and, when at least 16 characters follow it, the last
/// four: `glrt-t3_…abcd`, `…wxyz`.
pub fn mask(value: &str) -> String {
    let (prefix, rest) = value.split_at(shown_prefix_len(value));
    let count = rest.chars().count();
    if count >= 16 {
        let tail: String = rest.chars().skip(count - 4).collect();
        format!("{prefix}…{tail}")
    } else {
        format!("{prefix}…")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.hint())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hint())
    }
}

/// Where token files are looked up: `$CREDENTIALS_DIRECTORY` (systemd
/// `LoadCredential=`), then the prefix.
pub struct TokenDirs {
    dirs: Vec<PathBuf>,
}

impl TokenDirs {
    pub fn new(credentials_dir: Option<PathBuf>, prefix: &Path) -> Self {
        let mut dirs: Vec<PathBuf> = credentials_dir.into_iter().collect();
        dirs.push(prefix.to_path_buf());
        TokenDirs { dirs }
    }

    /// Read token file `name` from the first directory that has it.
    /// `Ok(None)` when no directory has it.
    pub fn read(&self, name: &str) -> Result<Option<(Secret, PathBuf)>> {
        for dir in &self.dirs {
            let path = dir.join(name);
            match std::fs::metadata(&path) {
                Ok(meta) => return read_token_file(&path, &meta).map(|s| Some((s, path))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::read(&path, e)),
            }
        }
        Ok(None)
    }
}

/// The effective uid of this process, read without `unsafe`: `/proc/self`
/// is owned by it.
pub fn effective_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

fn read_token_file(path: &Path, meta: &std::fs::Metadata) -> Result<Secret> {
    let shown = path.display();
    if !meta.is_file() {
        return Err(Error::config(format!(
            "refusing token file {shown}: not a regular file"
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::denied(format!(
            "refusing token file {shown}: it is accessible by group or others (mode {mode:04o}); fix it with: chmod 600 {shown}"
        )));
    }
    let euid = effective_uid();
    if meta.uid() != 0 && meta.uid() != euid {
        let owner = if euid == 0 {
            "root".to_string()
        } else {
            euid.to_string()
        };
        return Err(Error::denied(format!(
            "refusing token file {shown}: it is owned by uid {}, not by root or the caller; fix it with: chown {owner} {shown}",
            meta.uid()
        )));
    }
    let raw = std::fs::read(path).map_err(|e| Error::read(path, e))?;
    let text = String::from_utf8(raw)
        .map_err(|_| Error::data(format!("failed to read {shown}: not UTF-8 text")))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Error::config(format!("token file {shown} is empty")));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::data(format!(
            "failed to read {shown}: the token contains whitespace; a token file holds one token"
        )));
    }
    Ok(Secret::new(token))
}

/// Replace every known token, and every `token = "…"` value, by its mask.
pub fn mask_tokens(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s, &mask(s));
    }
    out.lines()
        .map(|line| {
            let t = line.trim_start();
            match t
                .strip_prefix("token")
                .map(str::trim_start)
                .and_then(|r| r.strip_prefix('='))
            {
                Some(v) if v.trim().starts_with('"') && !v.contains('…') && !v.contains("\"<") => {
                    let value = v.trim().trim_matches('"');
                    format!(
                        "{}token = \"{}\"",
                        &line[..line.len() - t.len()],
                        mask(value)
                    )
                }
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Does this admin-token look like an access token (for `POST /user/runners`)?
pub fn is_access_token(token: &str) -> bool {
    ["glpat-", "glgat-", "glpt-"]
        .iter()
        .any(|p| token.starts_with(p) || token.contains(&format!("-{p}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_prefix_and_tail_only() {
        let cases = [
            ("glrt-t3_abcdefghijklmnopqrst", "glrt-t3_…qrst"),
            ("glrt-abcdefghijklmnopqrst", "glrt-…qrst"),
            ("glrtr-abcdefghijklmnopqrst", "glrtr-…qrst"),
            ("glpat-0123456789abcdefghij", "glpat-…ghij"),
            ("glptt-0123456789abcdefghij", "glptt-…ghij"),
            ("GR1348941abcdefghijklmnop", "GR1348941…mnop"),
            ("t3_abcdefghijklmnopqrst", "…qrst"),
            ("short", "…"),
            ("", "…"),
            ("glrt-", "glrt-…"),
            ("glrt-short", "glrt-…"),
            ("glrt-t1_short", "glrt-t1_…"),
            (
                "mycompany-glrt-abcdefghijklmnopqrst",
                "mycompany-glrt-…qrst",
            ),
            (
                "mycompany-glrt-t2_abcdefghijklmnopqrst",
                "mycompany-glrt-t2_…qrst",
            ),
            // only GitLab's prefixes are shown, never a word of the token
            ("glrt-abcd-efghijklmnopqrstu", "glrt-…rstu"),
            ("abcd-efgh-ijklmnopqrstuvwx", "…uvwx"),
            ("abcd-efghijklmnopqrstuvwx", "…uvwx"),
            ("Abcd-glrt-efghijklmnopqrstuvwx", "…uvwx"),
            ("abcd-GR1348941efghijklmnopqrst", "…qrst"),
            ("glrt_abcdefghijklmnopqrst", "…qrst"),
            ("GLRT-abcdefghijklmnopqrst", "…qrst"),
            // 15 characters after the prefix: no tail
            ("glrt-abcdefghijklmno", "glrt-…"),
            ("glrt-abcdefghijklmnop", "glrt-…mnop"),
            // characters, not bytes
            ("glrt-ééééééééééééééééé", "glrt-…éééé"),
            ("ééééééééééééééé", "…"),
            ("€€€€-glrt-abcdefghijklmnopqrst", "…qrst"),
            ("glrt-€", "glrt-…"),
            ("g", "…"),
        ];
        for (token, want) in cases {
            assert_eq!(Secret::new(token).hint(), want, "{token}");
            assert_eq!(
                format!("{:?}", Secret::new(token)),
                format!("Secret({want})")
            );
        }
    }

    #[test]
    fn access_token_prefixes() {
        for (t, want) in [
            ("glpat-abc", true),
            ("glgat-abc", true),
            ("glpt-abc", true),
            ("mycorp-glpat-abc", true),
            ("GR1348941abc", false),
            ("glrt-abc", false),
            ("abcdef", false),
        ] {
            assert_eq!(is_access_token(t), want, "{t}");
        }
    }

    #[test]
    fn masks_tokens_in_text() {
        let text = "[[runners]]\n  token = \"glrt-abcdefghijklmnopqrst\"\n  url = \"x\"\n  env = [\"T=secretsecretsecret1234\"]";
        let out = mask_tokens(text, &["secretsecretsecret1234"]);
        assert!(!out.contains("glrt-abcdefghijklmnopqrst"));
        assert!(!out.contains("secretsecretsecret1234"));
        assert!(out.contains("  token = \"glrt-…qrst\""));
        assert!(out.contains("T=…1234"));
    }
}
