// SPDX-License-Identifier: MIT
//! `runner-data.json` (load and render, compatible with the original Python
//! script's file) and the runners found in an existing `config.toml`.

use crate::clock;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::trust::{self, Class};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// One runner type's record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    pub id: Option<u64>,
    pub token: Option<Secret>,
    pub token_expires_at: Option<i64>,
    pub token_obtained_at: Option<i64>,
    /// When a create for this type was sent and its answer not yet stored
    /// (`create_pending_since`): a run killed meanwhile leaves it, and the
    /// next run looks for the runner GitLab may have made before creating.
    pub create_pending_since: Option<i64>,
    /// Keys this tool does not know, kept as they were.
    pub extra: Map<String, Value>,
}

/// The state: runner type → entry, in name order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub entries: BTreeMap<String, Entry>,
}

impl State {
    /// The state of a host without `runner-data.json`.
    pub fn default_types() -> State {
        Self::with_types(["batch".to_string(), "shell".to_string()])
    }

    /// Empty entries for `types` (stateless mode: nothing is stored).
    pub fn with_types(types: impl IntoIterator<Item = String>) -> State {
        State {
            entries: types.into_iter().map(|t| (t, Entry::default())).collect(),
        }
    }

    /// Load `path`; `Ok(None)` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<State>> {
        let Some(bytes) = trust::read(path, Class::Input)? else {
            return Ok(None);
        };
        Self::parse(&bytes)
            .map(Some)
            .map_err(|m| Error::data(format!("failed to read {}: {m}", path.display())))
    }

    pub fn parse(bytes: &[u8]) -> std::result::Result<State, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let Value::Object(map) = value else {
            return Err("expected a JSON object of runner types".into());
        };
        let mut entries = BTreeMap::new();
        for (ty, v) in map {
            if ty.is_empty() || ty == crate::template::HOSTNAME || ty.contains(['.', '{', '}']) {
                return Err(format!("'{ty}' cannot be a runner type name"));
            }
            let entry = match v {
                Value::Object(obj) => {
                    Entry::from_json(obj).map_err(|m| format!("runner '{ty}': {m}"))?
                }
                Value::Null => Entry::default(),
                _ => return Err(format!("runner '{ty}': expected an object")),
            };
            entries.insert(ty, entry);
        }
        if entries.is_empty() {
            return Err("no runner types in the file".into());
        }
        Ok(State { entries })
    }

    /// Write the state to `path` (atomically), unless it already holds it.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_json();
        if crate::fsutil::same_content(path, &bytes) {
            return Ok(());
        }
        crate::fsutil::write_atomic(path, &bytes)
    }

    /// The file's bytes: pretty JSON with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let map: Map<String, Value> = self
            .entries
            .iter()
            .map(|(k, e)| (k.clone(), e.to_json()))
            .collect();
        let mut out = serde_json::to_vec_pretty(&Value::Object(map)).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

impl Entry {
    /// What the template's fields of this runner type render to (no token:
    /// an empty one).
    pub fn values(&self) -> crate::template::RunnerValues<'_> {
        crate::template::RunnerValues {
            token: self.token.as_ref().map_or("", Secret::expose),
            id: self.id,
            token_obtained_at: self.token_obtained_at,
            token_expires_at: self.token_expires_at,
        }
    }

    fn from_json(mut obj: Map<String, Value>) -> std::result::Result<Entry, String> {
        let id = match obj.remove("id") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.as_u64().ok_or("'id' is not a positive integer")?),
            // Old fixtures show ids as strings.
            Some(Value::String(s)) => Some(s.parse().map_err(|_| "'id' is not an integer")?),
            Some(_) => return Err("'id' is not an integer".into()),
        };
        if id.is_some_and(|id| !crate::untrusted::id_ok(id)) {
            return Err(format!("'id' is not in 1..={}", crate::untrusted::ID_MAX));
        }
        let token = match obj.remove("token") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => match crate::untrusted::token_problem(s.trim()) {
                None => Some(Secret::new(s.trim())),
                Some(p) => {
                    return Err(format!(
                        "'token' is not a GitLab runner token ({p}); remove the entry's token to heal the runner"
                    ));
                }
            },
            Some(_) => return Err("'token' is not a string".into()),
        };
        let mut time = |key: &str| match obj.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => clock::parse(&s)
                .map(Some)
                .ok_or(format!("'{key}' is not an RFC 3339 time")),
            Some(_) => Err(format!("'{key}' is not a string")),
        };
        let token_expires_at = time("token_expires_at")?;
        let token_obtained_at = time("token_obtained_at")?;
        let create_pending_since = time("create_pending_since")?;
        Ok(Entry {
            id,
            token,
            token_expires_at,
            token_obtained_at,
            create_pending_since,
            extra: obj,
        })
    }

    fn to_json(&self) -> Value {
        let mut obj = Map::new();
        if let Some(id) = self.id {
            obj.insert("id".into(), id.into());
        }
        if let Some(token) = &self.token {
            obj.insert("token".into(), token.expose().into());
            obj.insert(
                "token_expires_at".into(),
                self.token_expires_at
                    .map_or(Value::Null, |t| clock::format(t).into()),
            );
            if let Some(t) = self.token_obtained_at {
                obj.insert("token_obtained_at".into(), clock::format(t).into());
            }
        }
        if let Some(t) = self.create_pending_since {
            obj.insert("create_pending_since".into(), clock::format(t).into());
        }
        for (k, v) in &self.extra {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Value::Object(obj)
    }
}

/// A runner found in an existing `config.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigRunner {
    pub token: Secret,
    pub id: Option<u64>,
    pub token_obtained_at: Option<i64>,
    /// gitlab-runner's `token_expires_at` of the block.
    pub token_expires_at: Option<i64>,
    /// The block's `url`: the GitLab the token is for.
    pub url: Option<String>,
}

/// The `[[runners]]` blocks of `config.toml` text read from `path`.
pub fn config_runner_blocks(path: &Path, text: &str) -> Result<Vec<toml::Value>> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        Error::data(format!(
            "failed to parse {}: {}",
            path.display(),
            toml_error(text, &e)
        ))
    })?;
    Ok(match table.remove("runners") {
        Some(toml::Value::Array(a)) => a,
        _ => Vec::new(),
    })
}

/// The runners of `config.toml` text read from `path`.
pub fn parse_config_runners(path: &Path, text: &str) -> Result<Vec<ConfigRunner>> {
    let runners = config_runner_blocks(path, text)?;
    Ok(runners
        .iter()
        .filter_map(|r| config_runner(path, r))
        .collect())
}

/// The runner of one `[[runners]]` block of `config.toml` read from
/// `path`, when it holds a token.
pub fn config_runner(path: &Path, r: &toml::Value) -> Option<ConfigRunner> {
    // gitlab-runner's zero time means "none"
    let zero = clock::parse(clock::ZERO).unwrap_or(i64::MIN);
    let time = |v: Option<&toml::Value>| {
        match v {
            Some(toml::Value::Datetime(d)) => clock::from_datetime(d),
            Some(toml::Value::String(s)) => clock::parse(s),
            _ => None,
        }
        .filter(|t| *t > zero)
    };
    let token = r.get("token")?.as_str()?.trim();
    // gitlab-runner writes what GitLab gave it when it rotates: a
    // token outside GitLab's alphabet is never taken from here
    if let Some(p) = crate::untrusted::token_problem(token).filter(|_| !token.is_empty()) {
        log::warn!(
            "{}: a runner's token is not a GitLab runner token ({p}): not used",
            path.display()
        );
        return None;
    }
    (!token.is_empty()).then(|| ConfigRunner {
        token: Secret::new(token),
        id: r
            .get("id")
            .and_then(|v| v.as_integer())
            .and_then(|i| u64::try_from(i).ok()),
        token_obtained_at: time(r.get("token_obtained_at")),
        token_expires_at: time(r.get("token_expires_at")),
        url: r.get("url").and_then(|u| u.as_str()).map(str::to_string),
    })
}

/// A TOML parse error as `line L, column C: message`. Never the quoted
/// source line the error's `Display` shows: it may hold a token.
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().lines().next().unwrap_or("").trim();
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {col}: {message}")
        }
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_original_scripts_file() {
        // What the Python script wrote: the registration answer, ids as integers.
        let original = br#"{"shell": {"id": 12, "token": "abcdefghij0123456789"}, "batch": {"id": "13", "token": "zyxwvutsrq9876543210 "}, "extra": {}}"#;
        let s = State::parse(original).unwrap();
        assert_eq!(s.entries["shell"].id, Some(12));
        assert_eq!(s.entries["batch"].id, Some(13));
        assert_eq!(
            s.entries["batch"].token.as_ref().unwrap().expose(),
            "zyxwvutsrq9876543210"
        );
        assert_eq!(s.entries["extra"], Entry::default());
    }

    #[test]
    fn round_trips_and_keeps_unknown_keys() {
        let text = br#"{"shell": {"id": 5, "token": "t", "token_expires_at": null, "token_obtained_at": "2024-01-01T00:00:00Z", "note": "x"}}"#;
        let s = State::parse(text).unwrap();
        let again = State::parse(&s.to_json()).unwrap();
        assert_eq!(s, again);
        let v: Value = serde_json::from_slice(&s.to_json()).unwrap();
        assert_eq!(v["shell"]["note"], "x");
        assert_eq!(v["shell"]["token_expires_at"], Value::Null);
        assert_eq!(v["shell"]["token_obtained_at"], "2024-01-01T00:00:00Z");
    }

    #[test]
    fn toml_errors_give_the_place_not_the_line() {
        let text = "a = 1\ntoken = \"secret-value-123456";
        let e = text.parse::<toml::Table>().unwrap_err();
        let msg = toml_error(text, &e);
        assert!(msg.starts_with("line 2, column "), "{msg}");
        assert!(!msg.contains("secret-value"), "{msg}");
    }

    #[test]
    fn rejects_bad_files() {
        let cases: [(&[u8], &str); 6] = [
            (b"{", "EOF while parsing"),
            (b"[]", "expected a JSON object"),
            (b"{}", "no runner types"),
            (br#"{"shell": 3}"#, "runner 'shell': expected an object"),
            (br#"{"shell": {"id": "x"}}"#, "'id' is not an integer"),
            (br#"{"hostname": {}}"#, "'hostname' cannot be a runner type"),
        ];
        for (text, want) in cases {
            let e = State::parse(text).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }
}
