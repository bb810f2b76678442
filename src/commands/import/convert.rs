// SPDX-License-Identifier: MIT
//! The pure half of `import`: the `[[runners]]` of a `config.toml`, with
//! where each value the template fills lies in the text; their runner type
//! names; and the template text itself: those values replaced by fields,
//! every other brace doubled, everything else kept byte for byte. The
//! `toml` crate only finds the values and their spans; the text is edited
//! at those spans, never serialised again.

use crate::clock;
use crate::secret::Secret;
use crate::template::HOSTNAME;
use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// The keys of a `[[runners]]` table the template fills; each is also the
/// field attribute that fills it (`{shell.token}`, `{shell.id}`, …).
pub const KEYS: [&str; 4] = ["token", "id", "token_obtained_at", "token_expires_at"];

/// Where one value the template fills lies in `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// One of [`KEYS`].
    pub key: &'static str,
    /// The value's bytes in the text, quotes included.
    pub span: Range<usize>,
    /// The quotes around a string value (`"`, `'`, `"""`, `'''`); empty
    /// for an integer or a bare datetime.
    pub quote: &'static str,
}

/// One `[[runners]]` table of `config.toml`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Block {
    /// Its place among the `[[runners]]`, from 1.
    pub n: usize,
    /// The line of its `[[runners]]` header.
    pub line: usize,
    pub name: Option<String>,
    pub executor: Option<String>,
    pub url: Option<String>,
    /// Trimmed; `None` when missing or empty.
    pub token: Option<Secret>,
    /// `None` when missing or 0 (gitlab-runner's "unknown").
    pub id: Option<u64>,
    /// `None` when missing or gitlab-runner's zero time.
    pub token_obtained_at: Option<i64>,
    pub token_expires_at: Option<i64>,
    /// The values the template fills, in [`KEYS`] order.
    pub slots: Vec<Slot>,
    /// Keys present with a value the template cannot fill (`id = "x"`, a
    /// datetime without offset), left as they are: key and why.
    pub kept: Vec<(&'static str, &'static str)>,
}

impl Block {
    /// How messages name it: `runner 'node12-shell'`, or `[[runners]] #2`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("runner '{n}'"),
            None => format!("[[runners]] #{}", self.n),
        }
    }
}

/// The line (from 1) of byte `pos` of `text`.
pub fn line_of(text: &str, pos: usize) -> usize {
    text.get(..pos).unwrap_or(text).matches('\n').count() + 1
}

fn quote_of(raw: &str) -> &'static str {
    ["\"\"\"", "'''", "\"", "'"]
        .into_iter()
        .find(|q| raw.starts_with(q))
        .unwrap_or("")
}

/// A time key's value: `Some(None)` for gitlab-runner's zero time ("none"),
/// `None` when it is not an RFC 3339 time with an offset.
fn time_of(v: &DeValue) -> Option<Option<i64>> {
    let t = match v {
        DeValue::Datetime(d) => clock::from_datetime(d)?,
        DeValue::String(s) => clock::parse(s)?,
        _ => return None,
    };
    let zero = clock::parse(clock::ZERO).unwrap_or(i64::MIN);
    Some((t > zero).then_some(t))
}

/// The `[[runners]]` of `text`, in order.
pub fn blocks(text: &str) -> Result<Vec<Block>, toml::de::Error> {
    let doc = DeTable::parse(text)?;
    let Some(DeValue::Array(items)) = doc.get_ref().get("runners").map(|v| v.get_ref()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let DeValue::Table(t) = item.get_ref() else {
            continue;
        };
        let text_of = |k: &str| {
            t.get(k)
                .and_then(|v| v.get_ref().as_str())
                .map(str::to_string)
        };
        let mut b = Block {
            n: i + 1,
            line: line_of(text, item.span().start),
            name: text_of("name"),
            executor: text_of("executor"),
            url: text_of("url"),
            ..Block::default()
        };
        for key in KEYS {
            let Some(v) = t.get(key) else {
                continue;
            };
            let span = v.span();
            let quote = quote_of(text.get(span.clone()).unwrap_or(""));
            let filled = match (key, v.get_ref()) {
                ("token", DeValue::String(s)) => {
                    let token = s.trim();
                    b.token = (!token.is_empty()).then(|| Secret::new(token));
                    Ok(())
                }
                ("token", _) => Err("not a string"),
                ("id", DeValue::Integer(n)) => {
                    match i64::from_str_radix(n.as_str(), n.radix())
                        .ok()
                        .and_then(|n| u64::try_from(n).ok())
                    {
                        Some(id) => {
                            b.id = (id > 0).then_some(id);
                            Ok(())
                        }
                        None => Err("not a runner id"),
                    }
                }
                ("id", _) => Err("not an integer"),
                (_, v) => match time_of(v) {
                    Some(t) if key == "token_obtained_at" => {
                        b.token_obtained_at = t;
                        Ok(())
                    }
                    Some(t) => {
                        b.token_expires_at = t;
                        Ok(())
                    }
                    None => Err("not an RFC 3339 time with an offset"),
                },
            };
            match filled {
                Ok(()) => b.slots.push(Slot { key, span, quote }),
                Err(why) => b.kept.push((key, why)),
            }
        }
        out.push(b);
    }
    Ok(out)
}

/// Why `name` cannot be a runner type, if it cannot: it must be a template
/// field name (`{name.token}`) and a runner tag.
pub fn type_problem(name: &str) -> Option<&'static str> {
    if name == HOSTNAME {
        return Some("hostname is the template's own field");
    }
    if name.contains(['.', '{', '}', '!', ':', '[', ']']) {
        return Some("a type cannot hold . { } ! : [ or ]");
    }
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_digit()) {
        return Some("a type cannot be a number");
    }
    crate::host::tag_problem(name).map(|why| match why {
        "be empty" => "a type cannot be empty",
        "hold a comma" => "a type cannot hold a comma",
        "hold whitespace" => "a type cannot hold whitespace",
        "hold a control character" => "a type cannot hold a control character",
        _ => "a type cannot be longer than 255 bytes",
    })
}

/// A runner type for each of `blocks`: the type GitLab names for it
/// (`known`, from its description and tags by the ownership rule) when it
/// names one that is a valid type not taken by an earlier block; else its
/// `name` without a leading `<hostname>-` (`node12-shell` → `shell`), else
/// its `executor`, else `runner`; a guess made unique against every other
/// block's type (`shell`, `shell-2`, …).
pub fn name_types(blocks: &[&Block], known: &[Option<String>], hostname: &str) -> Vec<String> {
    let mut fixed: Vec<Option<String>> = Vec::with_capacity(blocks.len());
    for i in 0..blocks.len() {
        let t = known
            .get(i)
            .cloned()
            .flatten()
            .filter(|t| type_problem(t).is_none() && !fixed.contains(&Some(t.clone())));
        fixed.push(t);
    }
    let mine = format!("{hostname}-");
    let mut out: Vec<String> = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        if let Some(t) = &fixed[i] {
            out.push(t.clone());
            continue;
        }
        let from_name = b
            .name
            .as_deref()
            .map(|n| n.strip_prefix(&mine).unwrap_or(n));
        let base = [from_name, b.executor.as_deref()]
            .into_iter()
            .flatten()
            .find(|t| type_problem(t).is_none())
            .unwrap_or("runner");
        let taken = |t: &str| out.iter().any(|o| o == t) || fixed.iter().flatten().any(|f| f == t);
        let mut ty = base.to_string();
        let mut n = 1;
        while taken(&ty) {
            n += 1;
            ty = format!("{base}-{n}");
        }
        out.push(ty);
    }
    out
}

/// The template field that replaces `slot` for runner type `ty`, in the
/// quotes the value had: `"{shell.token}"`, `{shell.id}`.
pub fn field(slot: &Slot, ty: &str) -> String {
    format!("{q}{{{ty}.{key}}}{q}", q = slot.quote, key = slot.key)
}

/// `text` as a template: the slots of each block given replaced by the
/// fields of its type, every other `{` and `}` doubled.
pub fn template(text: &str, fills: &[(&Block, &str)]) -> String {
    let mut edits: Vec<(Range<usize>, String)> = fills
        .iter()
        .flat_map(|(b, ty)| b.slots.iter().map(|s| (s.span.clone(), field(s, ty))))
        .collect();
    edits.sort_by_key(|(r, _)| r.start);
    let escape = |s: &str| s.replace('{', "{{").replace('}', "}}");
    let mut out = String::with_capacity(text.len() + 64 * edits.len());
    let mut at = 0;
    for (r, f) in edits {
        out.push_str(&escape(&text[at..r.start]));
        out.push_str(&f);
        at = r.end;
    }
    out.push_str(&escape(&text[at..]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{RunnerValues, Template};

    const CONFIG: &str = r#"# hand-made
concurrent = 4   # odd { spacing }

[[runners]]
  name = "node12-shell"
  url = "https://gitlab.example.com"
  id     =   105
  token = "glrt-aaaaaaaaaaaaaaaaaaaa"
  token_obtained_at = 2025-06-06T07:38:01Z
  token_expires_at = 0001-01-01T00:00:00Z
  executor = "shell"
  environment = ["X={y}", "Z=}{"]

[[runners]]
  url = 'https://gitlab.example.com'
  token = 'legacy0123456789abcdef'
  token_obtained_at = "2025-01-01T00:00:00Z"
  executor = "docker"
  [runners.docker]
    image = "alpine"

[[runners]]
  name = "gpu box"
  url = "https://gitlab.example.com"
  id = "7"
  token = """glrt-bbbbbbbbbbbbbbbbbbbb"""
  token_expires_at = 2030-01-01T00:00:00
  executor = "docker"
"#;

    #[test]
    fn finds_each_runner_and_its_values() {
        let bs = blocks(CONFIG).unwrap();
        assert_eq!(bs.len(), 3);
        let b = &bs[0];
        assert_eq!((b.n, b.line), (1, 4));
        assert_eq!(b.name.as_deref(), Some("node12-shell"));
        assert_eq!(b.id, Some(105));
        assert_eq!(
            b.token.as_ref().map(Secret::expose),
            Some("glrt-aaaaaaaaaaaaaaaaaaaa")
        );
        assert_eq!(b.token_obtained_at, clock::parse("2025-06-06T07:38:01Z"));
        assert_eq!(b.token_expires_at, None, "the zero time is none");
        let raw: Vec<&str> = b.slots.iter().map(|s| &CONFIG[s.span.clone()]).collect();
        assert_eq!(
            raw,
            [
                "\"glrt-aaaaaaaaaaaaaaaaaaaa\"",
                "105",
                "2025-06-06T07:38:01Z",
                "0001-01-01T00:00:00Z"
            ]
        );
        assert_eq!(bs[1].label(), "[[runners]] #2");
        assert_eq!(bs[1].slots[0].quote, "'");
        assert_eq!(bs[1].slots[1].quote, "\"");
        assert_eq!(
            bs[1].token_obtained_at,
            clock::parse("2025-01-01T00:00:00Z")
        );
        let b = &bs[2];
        assert_eq!(b.slots.len(), 1);
        assert_eq!(b.slots[0].quote, "\"\"\"");
        assert_eq!(
            b.kept,
            [
                ("id", "not an integer"),
                ("token_expires_at", "not an RFC 3339 time with an offset")
            ]
        );
    }

    #[test]
    fn the_template_renders_back_to_the_file() {
        let bs = blocks(CONFIG).unwrap();
        let types = ["shell", "docker", "docker-2"];
        let fills: Vec<(&Block, &str)> = bs.iter().zip(types).collect();
        let text = template(CONFIG, &fills);
        assert!(text.contains("  token = \"{shell.token}\"\n"), "{text}");
        assert!(text.contains("  id     =   {shell.id}\n"), "{text}");
        assert!(text.contains("token_obtained_at = {shell.token_obtained_at}\n"));
        assert!(text.contains("token = '{docker.token}'\n"), "{text}");
        assert!(text.contains("token_obtained_at = \"{docker.token_obtained_at}\"\n"));
        assert!(text.contains("token = \"\"\"{docker-2.token}\"\"\"\n"));
        assert!(
            text.contains("environment = [\"X={{y}}\", \"Z=}}{{\"]"),
            "{text}"
        );
        assert!(text.contains("# odd {{ spacing }}"), "{text}");
        assert!(!text.contains("glrt-"), "{text}");
        let t = Template::parse(&text, "t").unwrap();
        let rendered = t
            .render("node12", |ty| {
                let b = &bs[types.iter().position(|t| *t == ty)?];
                Some(RunnerValues {
                    token: b.token.as_ref().map_or("", Secret::expose),
                    id: b.id,
                    token_obtained_at: b.token_obtained_at,
                    token_expires_at: b.token_expires_at,
                })
            })
            .unwrap();
        assert_eq!(rendered, CONFIG);
    }

    #[test]
    fn inline_tables_and_files_without_runners() {
        let text = "runners = [{ name = \"a\", token = \"t0123\", id = 3 }]\n";
        let bs = blocks(text).unwrap();
        let t = template(text, &[(&bs[0], "a")]);
        assert_eq!(
            t,
            "runners = [{{ name = \"a\", token = \"{a.token}\", id = {a.id} }}]\n"
        );
        assert!(blocks("concurrent = 1\n").unwrap().is_empty());
        assert!(blocks("runners = 3\n").unwrap().is_empty());
        assert!(blocks("[[runners]\n").is_err());
    }

    #[test]
    fn type_names() {
        let b = |name: Option<&str>, executor: Option<&str>| Block {
            name: name.map(String::from),
            executor: executor.map(String::from),
            ..Block::default()
        };
        let list = [
            b(Some("node12-shell"), Some("shell")),
            b(Some("node12-shell"), Some("shell")),
            b(Some("shell-2"), Some("x")),
            b(Some("my gpu runner"), Some("docker")),
            b(Some("node12-"), None),
            b(None, Some("a.b")),
            b(Some("node1-batch"), Some("custom")),
            b(Some("hostname"), Some("shell")),
        ];
        let refs: Vec<&Block> = list.iter().collect();
        assert_eq!(
            name_types(&refs, &[], "node12"),
            [
                "shell",
                "shell-2",
                "shell-2-2",
                "docker",
                "runner",
                "runner-2",
                "node1-batch",
                "shell-3"
            ]
        );
        // GitLab's type wins over the name and the executor, and the
        // guesses step aside for it
        let login42 = [
            b(Some("login42 shell"), Some("shell")),
            b(Some("login42 batch"), Some("custom")),
            b(Some("login42 gpu"), Some("shell")),
        ];
        let refs: Vec<&Block> = login42.iter().collect();
        let known = |v: [Option<&str>; 3]| v.map(|t| t.map(String::from));
        assert_eq!(
            name_types(
                &refs,
                &known([Some("shell"), Some("batch"), Some("gpu")]),
                "login42"
            ),
            ["shell", "batch", "gpu"]
        );
        assert_eq!(
            name_types(&refs, &known([None, Some("shell"), None]), "login42"),
            ["shell-2", "shell", "shell-3"]
        );
        // a type GitLab names twice, or one no template can hold, is guessed
        assert_eq!(
            name_types(
                &refs,
                &known([Some("gpu"), Some("gpu"), Some("a.b")]),
                "login42"
            ),
            ["gpu", "custom", "shell"]
        );
        for bad in [
            "", "hostname", "a.b", "a b", "{x}", "a,b", "12", "x:y", "a\tb",
        ] {
            assert!(type_problem(bad).is_some(), "{bad:?}");
        }
        for good in ["shell", "shell-2", "gpu_a100", "Batch"] {
            assert_eq!(type_problem(good), None, "{good}");
        }
    }
}
