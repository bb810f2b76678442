// SPDX-License-Identifier: MIT
//! Serde types of the GitLab REST answers this tool reads. Lenient: unknown
//! fields are ignored, missing ones default.

use serde::Deserialize;

/// `POST /runners`, `POST /user/runners`, `POST /runners/verify` (15.10+) and
/// both reset endpoints (which have no `id`).
#[derive(Debug, Deserialize)]
pub struct TokenAnswer {
    #[serde(default)]
    pub id: Option<u64>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_expires_at: Option<String>,
}

/// `GET /runners/:id`. Its text is bounded as it is read (see
/// [`crate::untrusted`]): GitLab allows 50 tags a runner, so more than
/// [`MAX_TAGS`], a tag longer than [`MAX_TEXT`] or a description longer than
/// [`MAX_DESCRIPTION`] is a junk answer, and none of it is kept.
#[derive(Debug, Deserialize, Clone)]
pub struct RunnerDetails {
    pub id: u64,
    #[serde(default, deserialize_with = "bounded_description")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "bounded_tags")]
    pub tag_list: Vec<String>,
    /// Only GitLab older than 13.0 (or a patched one) sends it.
    #[serde(default)]
    pub token: Option<String>,
    /// RFC 3339; in the entity since GitLab 17.x, absent before.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// The most tags a runner's details may list (GitLab allows 50).
pub const MAX_TAGS: usize = 100;
/// The longest tag taken (GitLab's tag names are at most 255 characters).
pub const MAX_TEXT: usize = 255;
/// The longest description taken.
pub const MAX_DESCRIPTION: usize = 64 * 1024;

fn bounded_description<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    match v {
        Some(t) if t.len() > MAX_DESCRIPTION => Err(serde::de::Error::custom(format!(
            "a description longer than {MAX_DESCRIPTION} bytes"
        ))),
        v => Ok(v),
    }
}

/// A tag list, refused as soon as it passes [`MAX_TAGS`] (before the rest
/// is read) or holds a tag longer than [`MAX_TEXT`].
fn bounded_tags<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Tags;
    impl<'de> serde::de::Visitor<'de> for Tags {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "at most {MAX_TAGS} tags")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(t) = seq.next_element::<String>()? {
                if out.len() == MAX_TAGS || t.chars().count() > MAX_TEXT {
                    return Err(serde::de::Error::custom("too many or too long tags"));
                }
                out.push(t);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Tags)
}

/// A list entry (GitLab's `Runner` entity): no tags, and only what the
/// listing needs is kept.
#[derive(Debug, Deserialize)]
pub struct Listed {
    pub id: u64,
    #[serde(default)]
    pub description: Option<String>,
}

/// `GET /personal_access_tokens/self` (GitLab 15.5+): the access token's
/// own record (https://docs.gitlab.com/api/personal_access_tokens/#get-a-single-personal-access-token).
#[derive(Debug, Deserialize, Clone, PartialEq)]
pub struct TokenSelf {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// A date (`2027-01-31`), or a time; `null` when it never expires.
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub active: Option<bool>,
}

/// A GitLab error body: `{"message": "…"|{…}}` or `{"error": "…", "error_description": "…"}`.
#[derive(Debug, Deserialize, Default)]
pub struct ErrorBody {
    #[serde(default)]
    pub message: Option<serde_json::Value>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
}

impl ErrorBody {
    /// One line: the message, or the error and its description.
    pub fn text(&self) -> Option<String> {
        let msg = match &self.message {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(v @ serde_json::Value::Object(_)) => Some(v.to_string()),
            _ => None,
        };
        let err = self.error.as_ref().map(|e| match &self.error_description {
            Some(d) => format!("{e}: {d}"),
            None => e.clone(),
        });
        msg.or(err)
    }
}
