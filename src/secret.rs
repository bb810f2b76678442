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

    /// A masked form: the token's known prefix (see [`mask`]) and, for long
    /// tokens, the last four characters.
    pub fn hint(&self) -> String {
        mask(&self.0)
    }
}

/// The prefixes GitLab gives its tokens (see
/// https://docs.gitlab.com/security/tokens/#token-prefixes): runner
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
    /// Each directory, with the name prefix of its token files.
    dirs: Vec<(PathBuf, String)>,
}

impl TokenDirs {
    pub fn new(credentials_dir: Option<PathBuf>, prefix: &Path) -> Self {
        let mut dirs: Vec<(PathBuf, String)> = credentials_dir
            .into_iter()
            .map(|d| (d, String::new()))
            .collect();
        dirs.push((prefix.to_path_buf(), String::new()));
        TokenDirs { dirs }
    }

    /// The token files of another GitLab than `--api-url`'s: in
    /// `$CREDENTIALS_DIRECTORY` as `<name>.admin-token` (see
    /// [`crate::settings::credential_name`]), then in `<prefix>/<authority>/`.
    pub fn for_gitlab(credentials_dir: Option<PathBuf>, prefix: &Path, authority: &str) -> Self {
        let name = format!("{}.", crate::settings::credential_name(authority));
        let mut dirs: Vec<(PathBuf, String)> = credentials_dir
            .into_iter()
            .map(|d| (d, name.clone()))
            .collect();
        dirs.push((prefix.join(authority), String::new()));
        TokenDirs { dirs }
    }

    /// Read token file `name` from the first directory that has it,
    /// refusing one that others could read or change. `Ok(None)` when no
    /// directory has it.
    pub fn read(&self, name: &str) -> Result<Option<(Secret, PathBuf)>> {
        for (dir, prefix) in &self.dirs {
            let path = dir.join(format!("{prefix}{name}"));
            if let Some(text) = trust::read_text(&path, Class::Secret)? {
                return parse_token(&path, &text).map(|s| Some((s, path)));
            }
        }
        Ok(None)
    }
}

pub(crate) fn parse_token(path: &Path, text: &str) -> Result<Secret> {
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

/// Mask every token in `text`, whatever its quoting and even when it is
/// not valid TOML (the old `config.toml`, an error text from GitLab):
/// - the value of every key that names a secret (see [`is_token_key`]:
///   `token`, `AccountKey`, `password`, …; also `NAME=…` inside a string,
///   as `environment` holds them, and JSON's `"auth": "…"`, its quotes
///   escaped or not), in double, single or triple quotes, bare or
///   unterminated;
/// - the credential after `Bearer ` or `Basic ` (an `Authorization` header);
/// - every word that starts with a known token prefix (`glrt-…`, `glpat-…`,
///   `GR1348941…`) anywhere;
/// - every one of `secrets`, wherever it occurs.
///
/// Placeholders such as `<new token for shell>`, template fields
/// (`{shell.token}`) and masks (`glrt-…abcd`) are kept.
pub fn mask_tokens(text: &str, secrets: &[&str]) -> String {
    let mut out = mask_url_credentials(&mask_auth_headers(&mask_prefixed(&mask_keyed(text))));
    let mut known: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    // longest first: a secret inside another must not leave the other's rest
    known.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in known {
        if out.contains(s) {
            out = out.replace(s, &mask(s));
        }
    }
    out
}

/// Mask a value found after a token key, keeping its surrounding whitespace,
/// a placeholder (`<new token for shell>`) and an already masked value.
fn mask_value(value: &str) -> String {
    let core = value.trim();
    // already masked: a known prefix, `…`, at most the last four
    let masked = core
        .split_once('…')
        .is_some_and(|(_, tail)| tail.chars().count() <= 4);
    if core.is_empty()
        || masked
        || (core.starts_with('<') && core.ends_with('>'))
        || is_template_field(core)
    {
        return value.to_string();
    }
    let start = value.len() - value.trim_start().len();
    format!(
        "{}{}{}",
        &value[..start],
        mask(core),
        &value[start + core.len()..]
    )
}

/// A template field such as `{shell.token}` (a template, not a token).
fn is_template_field(value: &str) -> bool {
    value
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .is_some_and(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        })
}

/// The words in a key's name that make its value a secret (compared
/// case-insensitively): `token`, `AccountKey`, `PrivateKey`, `SecretKey`,
/// `password`, `helper_credentials`, `DOCKER_AUTH_CONFIG`, …
const SECRET_WORDS: &[&str] = &[
    "key",
    "secret",
    "password",
    "passwd",
    "credential",
    "auth",
    "token",
];

/// Is `key` the name of a secret: one of [`SECRET_WORDS`] in its name, but
/// not a time (`token_expires_at`, `token_obtained_at`: the tool's own
/// fields, shown by `plan`), and not in the `GITLAB_RUNNER_AUTH_` of this
/// tool's own settings.
fn is_token_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let k = k.strip_prefix("gitlab_runner_auth_").unwrap_or(&k);
    SECRET_WORDS.iter().any(|w| k.contains(w)) && !k.ends_with("_at")
}

/// `url` without the user and password it may carry (`https://…@host/`).
pub fn url_without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match userinfo_end(rest) {
            Some(at) => format!("{scheme}://…@{}", &rest[at + 1..]),
            None => url.to_string(),
        },
        // `user:password@host:port`, as proxies are often written
        None => url.rsplit('@').next().unwrap_or(url).to_string(),
    }
}

/// Where the `user:password` of a URL's rest (after `://`) ends: the last
/// `@` of its authority; or, for a password an admin wrote with a `/`, `?`
/// or `#` in it (`u:pa/ss@host`), the last `@` of the word when what comes
/// before its first `/` looks like `user:`.
fn userinfo_end(rest: &str) -> Option<usize> {
    let word = rest
        .find(|c: char| c.is_whitespace() || "\"'<>".contains(c))
        .map_or(rest, |e| &rest[..e]);
    let authority = word.find(['/', '?', '#']).map_or(word, |e| &word[..e]);
    authority.rfind('@').or_else(|| {
        let at = word.rfind('@')?;
        authority.contains(':').then_some(at)
    })
}

/// Every `scheme://user:password@` in `text` without its credentials.
fn mask_url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        match userinfo_end(tail) {
            Some(at) => {
                out.push('…');
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// Rule "token key": every line of `text`, and the lines of a multi-line
/// string that such a key opens.
fn mask_keyed(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // the closing delimiter of a multi-line token string still open
    let mut open: Option<&'static str> = None;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let eol = &line[body.len()..];
        let mut from = 0;
        if let Some(close) = open {
            match body.find(close) {
                Some(i) => {
                    out.push_str(&mask_value(&body[..i]));
                    from = i;
                    open = None;
                }
                None => {
                    out.push_str(&mask_value(body));
                    out.push_str(eol);
                    continue;
                }
            }
        }
        mask_assignments(&body[from..], &mut out, &mut open);
        out.push_str(eol);
    }
    out
}

/// Where a key may start: after these (and at the start of a line).
const KEY_START: &[char] = &['{', ',', '[', '"', '\'', '?', '&', ';', '(', ' ', '\t'];
/// Where a bare (unquoted) value ends.
const BARE_END: &[char] = &[' ', '\t', ',', '}', ']', ')', '#', '&', ';', '"', '\''];

/// Append `line` to `out` with the value of every token key masked; set
/// `open` when the line opens a multi-line token string.
fn mask_assignments(line: &str, out: &mut String, open: &mut Option<&'static str>) {
    let mut start = 0;
    let mut copied = 0;
    loop {
        // `NAME=value` inside a quoted string (`environment`): the value
        // runs to that string's closing quote, spaces and all
        let inside = line[..start]
            .chars()
            .next_back()
            .filter(|c| matches!(c, '"' | '\''));
        if let Some((value, opens)) = token_value(&line[start..], inside) {
            let (vs, ve) = (start + value.start, start + value.end);
            out.push_str(&line[copied..vs]);
            // a bare `{`/`[` opens an inline table or array, whose keys
            // are masked one by one; a quoted one is a value
            let quoted = vs > 0 && matches!(line.as_bytes()[vs - 1], b'"' | b'\'');
            let value = &line[vs..ve];
            if !quoted && value.trim_start().starts_with(['{', '[']) {
                out.push_str(value);
            } else {
                out.push_str(&mask_value(value));
            }
            copied = ve;
            start = ve;
            if opens.is_some() {
                *open = opens;
                break;
            }
        }
        match line[start..].find(KEY_START) {
            // the delimiters are ASCII: `+ 1` stays on a char boundary
            Some(i) => start += i + 1,
            None => break,
        }
    }
    out.push_str(&line[copied..]);
}

/// When `s` starts with `<token key> =`: the byte range of its value, and
/// the closing delimiter when the value is a multi-line string left open.
fn token_value(
    s: &str,
    inside: Option<char>,
) -> Option<(std::ops::Range<usize>, Option<&'static str>)> {
    let ws = |from: usize| s.len() - s[from..].trim_start_matches([' ', '\t']).len();
    // the key: bare or quoted segments joined by dots; the last one counts
    let mut p = ws(0);
    let mut last;
    // the quote of a quoted key: JSON's `"auth": "…"` (its quotes escaped
    // inside a TOML string) takes `:` for `=`
    let mut quote: Option<&str> = None;
    loop {
        let r = &s[p..];
        if let Some(q) = ["\\\"", "\"", "'"].into_iter().find(|q| r.starts_with(q)) {
            let end = r[q.len()..].find(q)?;
            last = &r[q.len()..q.len() + end];
            p += end + 2 * q.len();
            quote = Some(q);
        } else {
            let len = r
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(r.len());
            if len == 0 {
                return None;
            }
            last = &r[..len];
            p += len;
        }
        p = ws(p);
        if s[p..].starts_with('.') {
            p = ws(p + 1);
        } else {
            break;
        }
    }
    let json = quote.is_some_and(|q| q != "'") && s[p..].starts_with(':');
    if !is_token_key(last) || !(s[p..].starts_with('=') || json) {
        return None;
    }
    p = ws(p + 1);
    let r = &s[p..];
    if let Some(inner) = r.strip_prefix("\\\"") {
        let end = inner.find("\\\"").unwrap_or(inner.len());
        return Some((p + 2..p + 2 + end, None));
    }
    for delim in ["\"\"\"", "'''"] {
        if let Some(inner) = r.strip_prefix(delim) {
            let v = p + 3;
            return Some(match inner.find(delim) {
                Some(end) => (v..v + end, None),
                None => (v..s.len(), Some(delim)),
            });
        }
    }
    if let Some(inner) = r.strip_prefix('"') {
        // a basic string: `\"` does not close it
        let mut escaped = false;
        let end = inner
            .char_indices()
            .find(|&(_, c)| {
                let close = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                close
            })
            .map_or(inner.len(), |(i, _)| i);
        return Some((p + 1..p + 1 + end, None));
    }
    if let Some(inner) = r.strip_prefix('\'') {
        let end = inner.find('\'').unwrap_or(inner.len());
        return Some((p + 1..p + 1 + end, None));
    }
    let end = match inside {
        Some(q) => r.find(q),
        None => r.find(BARE_END),
    }
    .unwrap_or(r.len());
    Some((p..p + end, None))
}

/// Rule "auth header": the credential after `Bearer ` or `Basic ` (any
/// case), up to a space, a quote, a backslash or a comma.
fn mask_auth_headers(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < text.len() {
        let at = ["bearer ", "basic "]
            .iter()
            .filter_map(|w| lower[i..].find(w).map(|j| (i + j, w.len())))
            .min();
        let Some((at, len)) = at else { break };
        let from = at + len;
        let rest = &text[from..];
        let end = rest
            .find(|c: char| c.is_whitespace() || "\"'\\,".contains(c))
            .unwrap_or(rest.len());
        if end > 0 && !rest[..end].contains('…') {
            out.push_str(&text[copied..from]);
            out.push_str(&mask(&rest[..end]));
            copied = from + end;
        }
        i = from + end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Rule "token prefix": every word that starts with a known prefix, up to
/// its last token character (`[A-Za-z0-9_.-]`), wherever it is.
fn mask_prefixed(text: &str) -> String {
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (i, c) in text.char_indices() {
        if i < copied
            || !(c == 'g' || c == 'G')
            || !TOKEN_PREFIXES.iter().any(|p| text[i..].starts_with(p))
        {
            continue;
        }
        let rest = &text[i..];
        let end = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
        let word = &rest[..end];
        // nothing after the prefix: a mask (`glrt-…abcd`) or prose ("glrt- tokens")
        if shown_prefix_len(word) == word.len() {
            continue;
        }
        out.push_str(&text[copied..i]);
        out.push_str(&mask(word));
        copied = i + end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Does this admin-token look like an access token (for `POST /user/runners`)?
pub fn is_access_token(token: &str) -> bool {
    ["glpat-", "glgat-", "glpt-"]
        .iter()
        .any(|p| token.starts_with(p) || token.contains(&format!("-{p}")))
}

/// What a token file holds, by the token's prefix
/// (https://docs.gitlab.com/security/tokens/#token-prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// `glpat-`: a personal, group or project access token (GitLab gives
    /// all three that prefix), or `glgat-`/`glpt-`, which this tool also
    /// takes as access tokens.
    Access,
    /// `glrt-`, `glrtr-` or a bare partition prefix (`t1_`, `t2_`, `t3_`:
    /// a runner registered with GitLab ≈17.5–17.10): one runner's
    /// authentication token, which authenticates that runner and creates
    /// nothing.
    RunnerAuth,
    /// `GR1348941`: a runner registration token (the legacy workflow).
    Registration,
    /// Another kind GitLab issues (deploy, trigger, feed, OAuth, …), named
    /// with its article: `a deploy token`.
    Other(&'static str),
    /// No known prefix: an older registration token, or something else;
    /// `--registration auto` takes it for a registration token.
    Unknown,
}

/// Does `token` start with a runner partition prefix (`t1_`, `t2_`, `t3_`),
/// alone or after a custom instance prefix (`mycorp-t1_`)?
fn partitioned(token: &str) -> bool {
    let rest = match token.split_once('-') {
        Some((word, rest))
            if !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) =>
        {
            rest
        }
        _ => token,
    };
    PARTITIONS
        .iter()
        .any(|p| token.starts_with(p) || rest.starts_with(p))
}

/// Token kinds by prefix that are neither access, runner nor registration tokens.
const OTHER_KINDS: &[(&str, &str)] = &[
    ("gloas-", "an OAuth application secret"),
    ("gldt-", "a deploy token"),
    ("glft-", "a feed token"),
    ("glimt-", "an incoming mail token"),
    ("glptt-", "a pipeline trigger token"),
    ("glsoat-", "a SCIM token"),
    ("glcbt-", "a CI/CD job token"),
];

impl TokenKind {
    /// Classify `token` by its prefix (after a custom instance prefix such
    /// as `mycompany-`).
    pub fn of(token: &str) -> TokenKind {
        let has = |p: &str| token.starts_with(p) || token.contains(&format!("-{p}"));
        if is_access_token(token) {
            TokenKind::Access
        } else if has("glrt-") || has("glrtr-") || partitioned(token) {
            TokenKind::RunnerAuth
        } else if token.starts_with("GR1348941") {
            TokenKind::Registration
        } else if let Some((_, name)) = OTHER_KINDS.iter().find(|(p, _)| has(p)) {
            TokenKind::Other(name)
        } else {
            TokenKind::Unknown
        }
    }

    /// What it is, for a message.
    pub fn describe(self) -> &'static str {
        match self {
            TokenKind::Access => "an access token (personal, group or project)",
            TokenKind::RunnerAuth => "a runner authentication token",
            TokenKind::Registration => "a runner registration token",
            TokenKind::Other(name) => name,
            TokenKind::Unknown => "a token without a known GitLab prefix",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_with_spaces_braces_or_an_ellipsis_are_masked() {
        for (text, secret) in [
            (
                r#"environment = ["DB_PASSWORD=correct horse Space1414"]"#,
                "horse Space1414",
            ),
            (r#"SecretKey = "{{Brace4444""#, "Brace4444"),
            (
                r#"helper_credentials = { password = "[Brack5555" }"#,
                "Brack5555",
            ),
            (r#"password = "ell…ipsis7777""#, "ipsis7777"),
        ] {
            let out = mask_tokens(text, &[]);
            assert!(!out.contains(secret), "{text} -> {out}");
        }
        // masks, placeholders and inline tables stay readable
        for (text, kept) in [
            (r#"token = "glrt-…abcd""#, "glrt-…abcd"),
            (
                r#"token = "<new token for shell>""#,
                "<new token for shell>",
            ),
        ] {
            assert!(mask_tokens(text, &[]).contains(kept), "{text}");
        }
    }

    #[test]
    fn url_credentials_are_cut_even_with_a_slash_in_the_password() {
        for (url, want) in [
            (
                "https://ci:pa/ss6666@other.example.com/x",
                "https://…@other.example.com/x",
            ),
            ("socks5://u:se/cret1@proxy:1080", "socks5://…@proxy:1080"),
            ("http://u:a?b#c@proxy:3128", "http://…@proxy:3128"),
            ("https://u:pw@host/a", "https://…@host/a"),
            ("https://host/a@b", "https://host/a@b"),
            ("https://host:443/x", "https://host:443/x"),
        ] {
            assert_eq!(url_without_credentials(url), want, "{url}");
            let text = format!("ignoring ALL_PROXY={url} here");
            assert_eq!(
                mask_url_credentials(&text),
                format!("ignoring ALL_PROXY={want} here"),
                "{url}"
            );
        }
    }

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
    fn token_kinds_by_prefix() {
        let cases = [
            ("glpat-abc", TokenKind::Access),
            ("mycorp-glpat-abc", TokenKind::Access),
            ("glgat-abc", TokenKind::Access),
            ("glrt-t3_abc", TokenKind::RunnerAuth),
            ("glrtr-abc", TokenKind::RunnerAuth),
            ("mycorp-glrt-abc", TokenKind::RunnerAuth),
            ("mycorp-glrtr-abc", TokenKind::RunnerAuth),
            ("t1_abc", TokenKind::RunnerAuth),
            ("t3_abc", TokenKind::RunnerAuth),
            ("mycorp-t2_abc", TokenKind::RunnerAuth),
            (
                "glrt-cHJvamVjdF9pZD0xMjM0NQpvcmc9MQ.01.1a0x9k7zq",
                TokenKind::RunnerAuth,
            ),
            ("abcdefghijklmnopqrst", TokenKind::Unknown),
            ("GR1348941abc", TokenKind::Registration),
            ("gldt-abc", TokenKind::Other("a deploy token")),
            ("glptt-abc", TokenKind::Other("a pipeline trigger token")),
            ("abcdef0123456789", TokenKind::Unknown),
            ("GLRT-abc", TokenKind::Unknown),
        ];
        for (t, want) in cases {
            assert_eq!(TokenKind::of(t), want, "{t}");
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

    #[test]
    fn masks_token_values_in_any_quoting_and_invalid_toml() {
        // `%`: a token without a known prefix that is not among the secrets
        const T: &str = "abcdefghijklmnopqrst";
        let cases = [
            ("token = \"%\"", "token = \"…qrst\""),
            ("token = '%'", "token = '…qrst'"),
            ("  token='%'", "  token='…qrst'"),
            ("token   =   \"%\"  # old", "token   =   \"…qrst\"  # old"),
            ("token = \"\"\"%\"\"\"", "token = \"\"\"…qrst\"\"\""),
            ("token = '''%'''", "token = '''…qrst'''"),
            (
                "token = \"\"\"\n  %\n\"\"\"\nurl = \"%\"",
                "token = \"\"\"\n  …qrst\n\"\"\"\nurl = \"%\"",
            ),
            ("token = '''\n%'''", "token = '''\n…qrst'''"),
            ("token = %", "token = …qrst"),
            ("token = % # bare", "token = …qrst # bare"),
            ("token = \"a\\\"bcdefghijklmnopqrst\"", "token = \"…qrst\""),
            // unterminated
            ("token = \"%", "token = \"…qrst"),
            ("token = '%", "token = '…qrst"),
            (
                "token = \"%\r\nurl = 'u'\r\n",
                "token = \"…qrst\r\nurl = 'u'\r\n",
            ),
            // quoted, dotted, `*_token` and `*-token` keys
            ("\"token\" = \"%\"", "\"token\" = \"…qrst\""),
            ("'token' = '%'", "'token' = '…qrst'"),
            ("runners . token = '%'", "runners . token = '…qrst'"),
            ("registration_token = '%'", "registration_token = '…qrst'"),
            ("PRIVATE-TOKEN=% x", "PRIVATE-TOKEN=…qrst x"),
            (
                "x = { token = '%', id = 1 }",
                "x = { token = '…qrst', id = 1 }",
            ),
            (
                "env = [\"RUNNER_TOKEN=%\"]",
                "env = [\"RUNNER_TOKEN=…qrst\"]",
            ),
            // keys that only start with token, and prose, are left alone
            (
                "token_expires_at = 2030-01-01T00:00:00Z",
                "token_expires_at = 2030-01-01T00:00:00Z",
            ),
            ("tokens = '%'", "tokens = '…qrst'"),
            ("token: %", "token: %"),
            (
                "invalid_token: Token is expired",
                "invalid_token: Token is expired",
            ),
            // other secrets a config.toml holds, by their key's name
            ("AccountKey = \"%\"", "AccountKey = \"…qrst\""),
            ("PrivateKey = '%'", "PrivateKey = '…qrst'"),
            (
                "helper_credentials = \"%\"",
                "helper_credentials = \"…qrst\"",
            ),
            (
                "x = { username = \"u\", password = \"%\" }",
                "x = { username = \"u\", password = \"…qrst\" }",
            ),
            ("env = [\"MY_SSH_KEY=%\"]", "env = [\"MY_SSH_KEY=…qrst\"]"),
            ("env = [\"PLAIN=%\"]", "env = [\"PLAIN=%\"]"),
            // this tool's own settings are not secrets
            (
                "GITLAB_RUNNER_AUTH_API_URL=%",
                "GITLAB_RUNNER_AUTH_API_URL=%",
            ),
            // JSON's auth field, its quotes escaped in a TOML string or not
            (
                "env = [\"DOCKER_AUTH_CONFIG={\\\"auths\\\":{\\\"r\\\":{\\\"auth\\\":\\\"%\\\"}}}\"]",
                "env = [\"DOCKER_AUTH_CONFIG={\\\"auths\\\":{\\\"r\\\":{\\\"auth\\\":\\\"…qrst\\\"}}}\"]",
            ),
            ("{\"auth\": \"%\"}", "{\"auth\": \"…qrst\"}"),
            // an Authorization header's credential, whatever the key
            (
                "HDR=Authorization: Bearer % x",
                "HDR=Authorization: Bearer …qrst x",
            ),
            ("h = 'basic %'", "h = 'basic …qrst'"),
            // invalid TOML
            (
                "[[runners]\ntoken = \"%\"\n",
                "[[runners]\ntoken = \"…qrst\"\n",
            ),
            ("= token = '%", "= token = '…qrst"),
            // placeholders and masks stay readable
            (
                "token = \"<new token for shell>\"",
                "token = \"<new token for shell>\"",
            ),
            ("token = 'glrt-t3_…qrst'", "token = 'glrt-t3_…qrst'"),
            ("token = \"{shell.token}\"", "token = \"{shell.token}\""),
            ("token = '{shell-2}'", "token = '{shell-2}'"),
            ("token = ''", "token = ''"),
            // characters, not bytes
            ("token = \"ééééééééééééééééé\" # ü", "token = \"…éééé\" # ü"),
        ];
        for (text, want) in cases {
            let (text, want) = (text.replace('%', T), want.replace('%', T));
            assert_eq!(mask_tokens(&text, &[]), want, "{text}");
        }
    }

    #[test]
    fn masks_prefixed_and_known_tokens_anywhere() {
        let cases: [(&str, &[&str], &str); 12] = [
            (
                "env = [\"X=glpat-abcdefghijklmnopqrst\", \"Y=1\"]",
                &[],
                "env = [\"X=glpat-…qrst\", \"Y=1\"]",
            ),
            (
                "url = \"https://oauth2:glpat-abcdefghijklmnopqrst@gitlab.example.com\"",
                &[],
                "url = \"https://…@gitlab.example.com\"",
            ),
            (
                "# registered with GR1348941abcdefghijklmnop",
                &[],
                "# registered with GR1348941…mnop",
            ),
            (
                "name = \"mycompany-glrt-t3_abcdefghijklmnopqrst\"",
                &[],
                "name = \"mycompany-glrt-t3_…qrst\"",
            ),
            // a trailing `.` is a token character
            ("a=glrtr-abcdefghijklmnopqrst.", &[], "a=glrtr-…rst."),
            ("FOO_glrt-abc", &[], "FOO_glrt-…"),
            // masks and prose are kept
            (
                "put an access token (glpat-…) here; glrt- tokens; glrt-t3_…qrst",
                &[],
                "put an access token (glpat-…) here; glrt- tokens; glrt-t3_…qrst",
            ),
            // every known secret, wherever it is
            (
                "description = \"xyzabcdefghijklmnopqrst\"",
                &["abcdefghijklmnopqrst"],
                "description = \"xyz…qrst\"",
            ),
            // the longest first: no rest of a longer secret is left
            (
                "x abcdefghijklmnopqrstuv y",
                &["abcdefghij", "abcdefghijklmnopqrstuv", ""],
                "x …stuv y",
            ),
            // what GitLab or a proxy may echo
            (
                "bad request: token=GR1348941abcdefghijklmnop PRIVATE-TOKEN=glpat-abcdefghijklmnopqrst",
                &[],
                "bad request: token=GR1348941…mnop PRIVATE-TOKEN=glpat-…qrst",
            ),
            (
                "{\"token\":\"abcdefghijklmnopqrst\"}",
                &["abcdefghijklmnopqrst"],
                "{\"token\":\"…qrst\"}",
            ),
            ("ü glrt-abcdefghijklmnopqrst ü", &[], "ü glrt-…qrst ü"),
        ];
        for (text, secrets, want) in cases {
            assert_eq!(mask_tokens(text, secrets), want, "{text}");
        }
    }

    #[test]
    fn masking_any_text_never_panics() {
        let text =
            "token = \"\"\"é\n'ü glrt-t3_ééé\" = token='€GR1348941 x_token=\"\r\n{ token = é, ";
        for (i, _) in text.char_indices() {
            for (j, _) in text[i..].char_indices() {
                mask_tokens(&text[i..i + j], &["é", "token"]);
            }
        }
    }
}
