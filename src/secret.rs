// SPDX-License-Identifier: MIT
//! Secrets: a `Secret` newtype that never prints its value, and reading token
//! files (trimmed, from `$CREDENTIALS_DIRECTORY` first) with permission checks.

use crate::error::{Error, Result};
use crate::trust::{self, Class};
use std::fmt;
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

    /// A masked form: the token's prefix (up to its last `-`, when that is a
    /// short word prefix such as `glrt-`) and, for long tokens, the last four
    /// characters.
    pub fn hint(&self) -> String {
        mask(&self.0)
    }
}

/// Mask any token-like string (see [`Secret::hint`]).
pub fn mask(value: &str) -> String {
    let prefix = match value.rfind('-') {
        Some(i)
            if i <= 24
                && value[..i]
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '-') =>
        {
            &value[..=i]
        }
        _ => "",
    };
    let rest = &value[prefix.len()..];
    let chars: Vec<char> = rest.chars().collect();
    if chars.len() >= 16 {
        let tail: String = chars[chars.len() - 4..].iter().collect();
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

    /// Read token file `name` from the first directory that has it,
    /// refusing one that others could read or change. `Ok(None)` when no
    /// directory has it.
    pub fn read(&self, name: &str) -> Result<Option<(Secret, PathBuf)>> {
        for dir in &self.dirs {
            let path = dir.join(name);
            if let Some(text) = trust::read_text(&path, Class::Secret)? {
                return parse_token(&path, &text).map(|s| Some((s, path)));
            }
        }
        Ok(None)
    }
}

fn parse_token(path: &Path, text: &str) -> Result<Secret> {
    let shown = path.display();
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
            ("glrt-t3_abcdefghijklmnopqrst", "glrt-…qrst"),
            ("glpat-0123456789abcdefghij", "glpat-…ghij"),
            ("GR1348941abcdefghijklmnop", "…mnop"),
            ("short", "…"),
            ("glrt-short", "glrt-…"),
            (
                "mycompany-glrt-abcdefghijklmnopqrst",
                "mycompany-glrt-…qrst",
            ),
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
