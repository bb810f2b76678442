// SPDX-License-Identifier: MIT
//! The `config.template` renderer: Python `str.format` syntax with named
//! fields only, parsed once into segments; errors name line and column.

use crate::error::{Error, Result};
use std::collections::BTreeSet;

/// Which value of a runner a field asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    Token,
    Id,
    TokenObtainedAt,
    TokenExpiresAt,
}

impl Attr {
    fn parse(name: &str) -> Option<Attr> {
        Some(match name {
            "token" => Attr::Token,
            "id" => Attr::Id,
            "token_obtained_at" => Attr::TokenObtainedAt,
            "token_expires_at" => Attr::TokenExpiresAt,
            _ => return None,
        })
    }
}

/// A replacement field: `{hostname}`, `{shell}` or `{shell.id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// `hostname` or a runner type.
    pub base: String,
    /// `None` for `{shell}`, which is the token.
    pub attr: Option<Attr>,
    pub line: usize,
    pub col: usize,
}

impl Field {
    /// As written: `shell`, `shell.id`.
    fn name(&self) -> String {
        let attr = match self.attr {
            None => "",
            Some(Attr::Token) => ".token",
            Some(Attr::Id) => ".id",
            Some(Attr::TokenObtainedAt) => ".token_obtained_at",
            Some(Attr::TokenExpiresAt) => ".token_expires_at",
        };
        format!("{}{attr}", shown(&self.base))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Field(Field),
}

#[derive(Debug, Clone)]
pub struct Template {
    origin: String,
    segments: Vec<Segment>,
}

/// The values one runner type provides to the template.
pub struct RunnerValues<'a> {
    pub token: &'a str,
    pub id: Option<u64>,
    pub token_obtained_at: Option<i64>,
    pub token_expires_at: Option<i64>,
}

pub const HOSTNAME: &str = "hostname";

impl Template {
    /// Parse `text`; `origin` (usually the file path) prefixes error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Template> {
        let mut segments = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        let (mut line, mut col) = (1usize, 1usize);
        let err = |line: usize, col: usize, msg: &str| {
            Error::data(format!("invalid template {origin}:{line}:{col}: {msg}"))
        };
        while let Some(c) = chars.next() {
            let (here_line, here_col) = (line, col);
            advance(&mut line, &mut col, c);
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    advance(&mut line, &mut col, '{');
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    advance(&mut line, &mut col, '}');
                    lit.push('}');
                }
                '}' => {
                    return Err(err(
                        here_line,
                        here_col,
                        "single '}' encountered; write '}}' for a literal brace",
                    ));
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        advance(&mut line, &mut col, c);
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        if c == '{' {
                            return Err(err(
                                here_line,
                                here_col,
                                "unexpected '{' inside a field; write '{{' for a literal brace",
                            ));
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(err(
                            here_line,
                            here_col,
                            "'{' is never closed; write '{{' for a literal brace",
                        ));
                    }
                    let field = parse_field(&name, here_line, here_col)
                        .map_err(|m| err(here_line, here_col, &m))?;
                    if !lit.is_empty() {
                        segments.push(Segment::Text(std::mem::take(&mut lit)));
                    }
                    segments.push(Segment::Field(field));
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            segments.push(Segment::Text(lit));
        }
        Ok(Template {
            origin: origin.to_string(),
            segments,
        })
    }

    /// Does the template's literal text contain `text`?
    pub fn has_literal(&self, text: &str) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Text(t) if t.contains(text)))
    }

    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Field(f) => Some(f),
            Segment::Text(_) => None,
        })
    }

    /// The runner types the template names (every field base but `hostname`).
    pub fn runner_types(&self) -> BTreeSet<String> {
        self.fields()
            .filter(|f| f.base != HOSTNAME)
            .map(|f| f.base.clone())
            .collect()
    }

    /// Fail, naming line and column, on the first field whose base is neither
    /// `hostname` nor one of `types`.
    pub fn check_types(&self, types: &BTreeSet<String>, why: &str) -> Result<()> {
        match self
            .fields()
            .find(|f| f.base != HOSTNAME && !types.contains(&f.base))
        {
            Some(f) => {
                let known = types.iter().map(String::as_str).chain([HOSTNAME]);
                let hint = closest(&f.base, known)
                    .map_or(String::new(), |k| format!("; did you mean {{{k}}}?"));
                Err(Error::config(format!(
                    "invalid template {}:{}:{}: unknown field '{}' ({why}){hint}",
                    self.origin,
                    f.line,
                    f.col,
                    shown(&f.base)
                )))
            }
            None => Ok(()),
        }
    }

    /// Warn about a type whose `token_expires_at` is filled but whose
    /// `token_obtained_at` is not: gitlab-runner would rotate at once.
    pub fn expiry_without_obtained(&self) -> Vec<String> {
        let has = |base: &str, attr: Attr| {
            self.fields()
                .any(|f| f.base == base && f.attr == Some(attr))
        };
        self.runner_types()
            .into_iter()
            .filter(|t| has(t, Attr::TokenExpiresAt) && !has(t, Attr::TokenObtainedAt))
            .collect()
    }

    /// Render with `hostname` and a lookup of runner values by type. Each
    /// value is written for the TOML it lands in (see [`Context`]): escaped
    /// inside a `"…"` string, refused where it cannot be written as itself,
    /// so no value changes the document's shape.
    pub fn render<'a>(
        &self,
        hostname: &str,
        runner: impl Fn(&str) -> Option<RunnerValues<'a>>,
    ) -> Result<String> {
        let mut out = String::new();
        let mut ctx = Context::Bare;
        let mut escaped = false;
        for seg in &self.segments {
            match seg {
                Segment::Text(t) => {
                    out.push_str(t);
                    (ctx, escaped) = ctx.after(t, escaped);
                }
                Segment::Field(f) => {
                    let value = self.value(f, hostname, &runner)?;
                    let place = |m: &str| {
                        Error::data(format!(
                            "template {}:{}:{}: the value of {{{}}} cannot be written {}: {m}",
                            self.origin,
                            f.line,
                            f.col,
                            f.name(),
                            ctx.name()
                        ))
                    };
                    if escaped {
                        return Err(place("it follows a backslash"));
                    }
                    ctx.write(&value, &mut out).map_err(|m| place(&m))?;
                }
            }
        }
        Ok(out)
    }

    fn value<'a>(
        &self,
        f: &Field,
        hostname: &str,
        runner: &impl Fn(&str) -> Option<RunnerValues<'a>>,
    ) -> Result<String> {
        if f.base == HOSTNAME {
            return Ok(hostname.to_string());
        }
        let v = runner(&f.base).ok_or_else(|| {
            Error::internal(format!(
                "template {}:{}:{}: no value for '{}'",
                self.origin, f.line, f.col, f.base
            ))
        })?;
        let time = |t: Option<i64>| t.map_or(crate::clock::ZERO.to_string(), crate::clock::format);
        Ok(match f.attr {
            None | Some(Attr::Token) => v.token.to_string(),
            Some(Attr::Id) => v.id.unwrap_or(0).to_string(),
            Some(Attr::TokenObtainedAt) => time(v.token_obtained_at),
            Some(Attr::TokenExpiresAt) => time(v.token_expires_at),
        })
    }

    /// This template rendered with a mark of its own in place of each
    /// runner type's token (ids 1, no times): the text, and each type with
    /// its mark. No mark holds another, so a string containing one names
    /// its type.
    pub fn render_marked(&self, hostname: &str) -> Result<(String, Vec<(String, String)>)> {
        let marks: Vec<(String, String)> = self
            .runner_types()
            .into_iter()
            .enumerate()
            .map(|(i, ty)| (ty, format!("gra-mark-{i}-end")))
            .collect();
        let text = self.render(hostname, |ty| {
            let (_, mark) = marks.iter().find(|(t, _)| t == ty)?;
            Some(RunnerValues {
                token: mark,
                id: Some(1),
                token_obtained_at: None,
                token_expires_at: None,
            })
        })?;
        Ok((text, marks))
    }

    /// After rendering: `rendered` must have exactly the shape of this
    /// template rendered with harmless placeholders: the same tables, keys,
    /// array lengths and value kinds, and every string that is a runner's
    /// token field alone must parse back to exactly that token. Otherwise a
    /// value changed the document (a key injected into a `[[runners]]`
    /// block), and nothing may be written.
    pub fn check_shape<'a>(
        &self,
        hostname: &str,
        rendered: &toml::Table,
        runner: impl Fn(&str) -> Option<RunnerValues<'a>>,
    ) -> Result<()> {
        let (shape, marks) = self.render_marked(hostname)?;
        let Ok(shape) = shape.parse::<toml::Table>() else {
            // the inputs' check refuses such a template before any request
            return Err(Error::internal(format!(
                "template {}: does not render to TOML with placeholders",
                self.origin
            )));
        };
        let mut tokens = std::collections::HashMap::new();
        for (ty, mark) in &marks {
            let v = runner(ty).ok_or_else(|| Error::internal(format!("no value for '{ty}'")))?;
            tokens.insert(mark.as_str(), (ty.as_str(), v.token.to_string()));
        }
        same_tables(&shape, rendered, &tokens, "")
        .map_err(|m| {
            Error::data(format!(
                "{}: the rendered config.toml does not have the template's shape ({m}): nothing written",
                self.origin
            ))
        })
    }
}

/// [`same_shape`] of two tables: the same keys, each of the same shape.
fn same_tables(
    a: &toml::Table,
    b: &toml::Table,
    tokens: &std::collections::HashMap<&str, (&str, String)>,
    path: &str,
) -> std::result::Result<(), String> {
    let at = if path.is_empty() { "the top" } else { path };
    if let Some(k) = b.keys().find(|k| !a.contains_key(*k)) {
        // a key can hold a value (`[runners.{shell}]`): masked
        return Err(format!(
            "key {} in {at} is not the template's",
            crate::secret::mask_tokens(&crate::untrusted::shown(k), &[]),
        ));
    }
    for (k, va) in a {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        let vb = b.get(k).ok_or_else(|| format!("key {p} is missing"))?;
        same_shape(va, vb, tokens, &p)?;
    }
    Ok(())
}

/// Compare `want` (the placeholder rendering) with `got` at `path`.
fn same_shape(
    want: &toml::Value,
    got: &toml::Value,
    tokens: &std::collections::HashMap<&str, (&str, String)>,
    path: &str,
) -> std::result::Result<(), String> {
    use toml::Value as V;
    let at = |p: &str| {
        if p.is_empty() {
            "the top".to_string()
        } else {
            p.to_string()
        }
    };
    match (want, got) {
        (V::Table(a), V::Table(b)) => same_tables(a, b, tokens, path),
        (V::Array(a), V::Array(b)) => {
            if a.len() != b.len() {
                return Err(format!(
                    "{} has {} items, not {}",
                    at(path),
                    b.len(),
                    a.len()
                ));
            }
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                same_shape(va, vb, tokens, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (V::String(a), V::String(b)) => match tokens.get(a.as_str()) {
            Some((ty, token)) if b != token => {
                Err(format!("{path} does not read back as the token of {ty}"))
            }
            _ => Ok(()),
        },
        (a, b) if std::mem::discriminant(a) == std::mem::discriminant(b) => Ok(()),
        (a, b) => Err(format!(
            "{} is a {}, not a {}",
            at(path),
            b.type_str(),
            a.type_str()
        )),
    }
}

/// Where in the TOML a field's value lands, from the template's text
/// before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// Outside strings: a key, a number, a date.
    Bare,
    Comment,
    /// `"…"`
    Basic,
    /// `"""…"""`
    MultiBasic,
    /// `'…'`
    Literal,
    /// `'''…'''`
    MultiLiteral,
}

impl Context {
    fn name(self) -> &'static str {
        match self {
            Context::Bare => "outside a string",
            Context::Comment => "in a comment",
            Context::Basic | Context::MultiBasic => "in a string",
            Context::Literal | Context::MultiLiteral => "in a '…' literal string",
        }
    }

    /// The context after `text`, and whether it ends on an escaping
    /// backslash (in a `"…"` string).
    fn after(mut self, text: &str, mut escaped: bool) -> (Context, bool) {
        let b = text.as_bytes();
        let mut i = 0;
        let run = |i: usize, q: u8| b[i..].iter().take_while(|c| **c == q).count();
        while i < b.len() {
            let c = b[i];
            if escaped {
                escaped = false;
                i += 1;
                continue;
            }
            match self {
                Context::Bare => match c {
                    b'#' => self = Context::Comment,
                    b'"' if run(i, b'"') >= 3 => {
                        self = Context::MultiBasic;
                        i += 2;
                    }
                    b'"' => self = Context::Basic,
                    b'\'' if run(i, b'\'') >= 3 => {
                        self = Context::MultiLiteral;
                        i += 2;
                    }
                    b'\'' => self = Context::Literal,
                    _ => {}
                },
                Context::Comment if c == b'\n' => self = Context::Bare,
                Context::Comment => {}
                Context::Basic => match c {
                    b'\\' => escaped = true,
                    b'"' | b'\n' => self = Context::Bare,
                    _ => {}
                },
                Context::Literal if c == b'\'' || c == b'\n' => self = Context::Bare,
                Context::Literal => {}
                Context::MultiBasic => match c {
                    b'\\' => escaped = true,
                    b'"' if run(i, b'"') >= 3 => {
                        // up to two quotes before the closing three are content
                        i += run(i, b'"').min(5) - 1;
                        self = Context::Bare;
                    }
                    _ => {}
                },
                Context::MultiLiteral => {
                    if c == b'\'' && run(i, b'\'') >= 3 {
                        i += run(i, b'\'').min(5) - 1;
                        self = Context::Bare;
                    }
                }
            }
            i += 1;
        }
        (self, escaped)
    }

    /// Write `value` for this context, or say why it cannot be.
    fn write(self, value: &str, out: &mut String) -> std::result::Result<(), String> {
        let bad = |pred: &dyn Fn(char) -> bool| value.chars().find(|c| pred(*c));
        let found = |c: char| format!("it holds {c:?}");
        match self {
            Context::Basic | Context::MultiBasic => {
                for c in value.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
                        c => out.push(c),
                    }
                }
                return Ok(());
            }
            Context::Literal | Context::MultiLiteral => {
                if let Some(c) = bad(&|c| c == '\'' || (c.is_control() && c != '\t')) {
                    return Err(found(c));
                }
            }
            Context::Comment => {
                if let Some(c) = bad(&|c| c.is_control() && c != '\t') {
                    return Err(found(c));
                }
            }
            Context::Bare => {
                if let Some(c) = bad(&|c| !(c.is_ascii_alphanumeric() || "-_.:+".contains(c))) {
                    return Err(found(c));
                }
            }
        }
        out.push_str(value);
        Ok(())
    }
}

/// The candidate closest to `word` by edit distance (insert, delete,
/// substitute, swap two neighbours), if it is at most 2 and not `word`
/// itself; the first of equally close ones.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = distance(word, c);
        if d > 0 && d <= 2 && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// The optimal string alignment distance between `a` and `b`, in characters.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // bounded: field names are short, and a long one is no typo of a short one
    if a.len().abs_diff(b.len()) > 2 || a.len() > 64 || b.len() > 64 {
        return usize::MAX;
    }
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

fn advance(line: &mut usize, col: &mut usize, c: char) {
    if c == '\n' {
        *line += 1;
        *col = 1;
    } else {
        *col += 1;
    }
}

/// A field's text for an error message: masked (a template may hold a
/// literal token where a field was meant) and cut short.
fn shown(name: &str) -> String {
    let cut: String = name.chars().take(40).collect();
    let cut = if cut.len() < name.len() {
        format!("{cut}…")
    } else {
        cut
    };
    crate::secret::mask_tokens(&cut, &[])
}

fn parse_field(name: &str, line: usize, col: usize) -> std::result::Result<Field, String> {
    let s = shown(name);
    if let Some(i) = name.find(['!', ':']) {
        let what = if name[i..].starts_with('!') {
            "conversions"
        } else {
            "format specs"
        };
        return Err(format!(
            "field '{{{s}}}': {what} are not supported; use a plain named field such as {{shell}}"
        ));
    }
    if name.contains('[') || name.contains(']') {
        return Err(format!("field '{{{s}}}': indexing is not supported"));
    }
    let (base, attr) = match name.split_once('.') {
        Some((b, a)) => (b, Some(a)),
        None => (name, None),
    };
    if base.is_empty() || base.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "positional field '{{{s}}}' is not supported; name the field, e.g. {{hostname}} or {{shell}}"
        ));
    }
    if base.chars().any(char::is_whitespace) {
        return Err(format!("field '{{{s}}}': names cannot contain spaces"));
    }
    let attr = match attr {
        None => None,
        Some(a) if base == HOSTNAME => {
            return Err(format!(
                "field '{{{s}}}': hostname has no attribute '{}'",
                shown(a)
            ));
        }
        Some(a) => Some(Attr::parse(a).ok_or_else(|| {
            const KNOWN: [&str; 4] = ["token", "id", "token_obtained_at", "token_expires_at"];
            let hint = closest(a, KNOWN).map_or(String::new(), |k| {
                format!("; did you mean {{{base}.{k}}}?", base = shown(base))
            });
            format!(
                "field '{{{s}}}': unknown attribute '{}' (known: token, id, token_obtained_at, token_expires_at){hint}",
                shown(a)
            )
        })?),
    };
    Ok(Field {
        base: base.to_string(),
        attr,
        line,
        col,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: &str) -> Option<RunnerValues<'static>> {
        match t {
            "shell" => Some(RunnerValues {
                token: "tok-shell",
                id: Some(7),
                token_obtained_at: Some(0),
                token_expires_at: None,
            }),
            _ => None,
        }
    }

    #[test]
    fn renders_fields_and_braces() {
        let t = Template::parse(
            "a {{b}} {hostname} {shell} {shell.token} {shell.id} {shell.token_obtained_at} {shell.token_expires_at}",
            "t",
        )
        .unwrap();
        assert_eq!(
            t.render("h1", values).unwrap(),
            "a {b} h1 tok-shell tok-shell 7 1970-01-01T00:00:00Z 0001-01-01T00:00:00Z"
        );
        assert_eq!(
            t.runner_types().into_iter().collect::<Vec<_>>(),
            vec!["shell"]
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let cases = [
            ("x = {}", "t:1:5: positional field '{}'"),
            ("a\nx = {0}", "t:2:5: positional field '{0}'"),
            ("x = {shell!r}", "t:1:5: field '{shell!r}': conversions"),
            (
                "x = {shell:>10}",
                "t:1:5: field '{shell:>10}': format specs",
            ),
            ("x = {shell[0]}", "t:1:5: field '{shell[0]}': indexing"),
            (
                "x = {shell.bogus}",
                "t:1:5: field '{shell.bogus}': unknown attribute 'bogus'",
            ),
            (
                "x = {hostname.id}",
                "t:1:5: field '{hostname.id}': hostname has no attribute",
            ),
            ("\n\n  x = {shell", "t:3:7: '{' is never closed"),
            ("x = }", "t:1:5: single '}' encountered"),
            ("x = {a{b}}", "t:1:5: unexpected '{' inside a field"),
        ];
        for (text, want) in cases {
            let e = Template::parse(text, "t").unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.starts_with("invalid template t:"), "{e}");
        }
    }

    #[test]
    fn unknown_types_are_reported_with_position() {
        let t = Template::parse("{hostname}\n  {shel}", "f").unwrap();
        let types: BTreeSet<String> = ["shell".to_string()].into();
        let e = t
            .check_types(&types, "no such runner in runner-data.json")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid template f:2:3: unknown field 'shel' (no such runner in runner-data.json); did you mean {shell}?"
        );
    }

    #[test]
    fn unknown_fields_suggest_the_closest_known_one() {
        let types: BTreeSet<String> = ["batch".to_string(), "shell".to_string()].into();
        let cases = [
            ("{bach}", Some("did you mean {batch}?")),
            ("{shel}", Some("did you mean {shell}?")),
            ("{bacth}", Some("did you mean {batch}?")),
            ("{hostnme}", Some("did you mean {hostname}?")),
            ("{Shell}", Some("did you mean {shell}?")),
            ("{gpu}", None),
            ("{batches}", Some("did you mean {batch}?")),
            ("{batchesx}", None),
        ];
        for (text, want) in cases {
            let e = Template::parse(text, "t")
                .unwrap()
                .check_types(&types, "why")
                .unwrap_err()
                .to_string();
            match want {
                Some(w) => assert!(e.ends_with(&format!("(why); {w}")), "{text}: {e}"),
                None => assert!(e.ends_with("(why)"), "{text}: {e}"),
            }
        }
        let e = Template::parse("{shell.tokn}", "t")
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("; did you mean {shell.token}?"), "{e}");
        let e = Template::parse("{shell.expires}", "t")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("did you mean"), "{e}");
        assert_eq!(
            closest("x", ["x"]),
            None,
            "the word itself is no suggestion"
        );
        assert_eq!(distance("ab", "ba"), 1);
        assert_eq!(distance("", "ab"), 2);
    }

    #[test]
    fn arbitrary_text_never_panics() {
        // a deterministic walk over strings built from the characters that matter
        let alphabet = ['{', '}', 'a', '.', '0', ':', '!', '\n', 'é', ' ', '[', 'x'];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 12) as usize;
            let text: String = (0..len)
                .map(|i| alphabet[((seed >> (i * 4)) % alphabet.len() as u64) as usize])
                .collect();
            if let Ok(t) = Template::parse(&text, "t") {
                let _ = t.render("h", |_| {
                    Some(RunnerValues {
                        token: "t",
                        id: None,
                        token_obtained_at: None,
                        token_expires_at: None,
                    })
                });
            }
        }
    }

    fn with_token<'a>(token: &'a str) -> impl Fn(&str) -> Option<RunnerValues<'a>> {
        move |_| {
            Some(RunnerValues {
                token,
                id: Some(7),
                token_obtained_at: None,
                token_expires_at: None,
            })
        }
    }

    #[test]
    fn values_are_written_for_the_toml_they_land_in() {
        let nasty = "a\"b\\c\n  executor = \"custom\"\u{1b}";
        for text in [
            "token = \"{shell}\"",
            "token = \"x-{shell}-y\"",
            "token = \"\"\"\n{shell}\"\"\"",
            "token = \"\"\"{shell}\"\"\"",
            "k = 'a\"b' # '\ntoken = \"{shell}\"",
        ] {
            let t = Template::parse(text, "t").unwrap();
            let out = t.render("h", with_token(nasty)).unwrap();
            let table: toml::Table = out.parse().unwrap_or_else(|e| panic!("{text}: {out}: {e}"));
            let got = table["token"].as_str().unwrap();
            assert!(got.contains(nasty), "{text}: {got:?}");
            let keys = if text.starts_with("k =") { 2 } else { 1 };
            assert_eq!(table.len(), keys, "{out}");
            t.check_shape("h", &table, with_token(nasty)).unwrap();
        }
        let refused = [
            (
                "token = '{shell}'",
                "in a '…' literal string: it holds '\\n'",
            ),
            (
                "token = '''{shell}'''",
                "in a '…' literal string: it holds '\\n'",
            ),
            ("# {shell}", "in a comment: it holds '\\n'"),
            ("token = {shell}", "outside a string: it holds '\"'"),
            ("token = \"\\{shell}\"", "it follows a backslash"),
        ];
        for (text, want) in refused {
            let e = Template::parse(text, "t")
                .unwrap()
                .render("h", with_token(nasty))
                .unwrap_err();
            assert_eq!(e.kind(), crate::error::Kind::Data);
            assert!(e.to_string().contains(want), "{text}: {e}");
            assert!(
                e.to_string()
                    .contains("the value of {shell} cannot be written"),
                "{e}"
            );
        }
        // what a literal string, a comment or a bare value can hold is kept
        let t = Template::parse("a = '{shell}' # {shell}\nid = {shell.id}", "t").unwrap();
        assert_eq!(
            t.render("h", with_token("glrt-t1_Ab.01.x")).unwrap(),
            "a = 'glrt-t1_Ab.01.x' # glrt-t1_Ab.01.x\nid = 7"
        );
    }

    #[test]
    fn a_rendering_of_another_shape_is_refused() {
        let t = Template::parse("[[runners]]\ntoken = \"{shell}\"\n", "t").unwrap();
        let check = |text: &str, token: &str| {
            let table: toml::Table = text.parse().unwrap();
            t.check_shape("h", &table, with_token(token))
        };
        check("[[runners]]\ntoken = \"tok\"\n", "tok").unwrap();
        let cases = [
            (
                "[[runners]]\ntoken = \"tok\"\nexecutor = \"custom\"\n",
                "key executor in runners[0] is not the template's",
            ),
            (
                "[[runners]]\ntoken = \"other\"\n",
                "runners[0].token does not read back as the token of shell",
            ),
            (
                "[[runners]]\ntoken = \"tok\"\n[[runners]]\ntoken = \"tok\"\n",
                "runners has 2 items, not 1",
            ),
            (
                "[[runners]]\ntoken = 1\n",
                "runners[0].token is a integer, not a string",
            ),
            ("x = 1\n", "key x in the top is not the template's"),
        ];
        for (text, want) in cases {
            let e = check(text, "tok").unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.ends_with("): nothing written"), "{e}");
        }
    }

    #[test]
    fn warns_about_expiry_without_obtained() {
        let t = Template::parse(
            "{a.token_expires_at} {b.token_expires_at} {b.token_obtained_at}",
            "t",
        )
        .unwrap();
        assert_eq!(t.expiry_without_obtained(), vec!["a"]);
    }
}
