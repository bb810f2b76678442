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

/// `GET /runners/:id` and list entries.
#[derive(Debug, Deserialize, Clone)]
pub struct RunnerDetails {
    pub id: u64,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tag_list: Vec<String>,
    /// Only GitLab older than 13.0 (or a patched one) sends it.
    #[serde(default)]
    pub token: Option<String>,
    /// RFC 3339; in the entity since GitLab 17.x, absent before.
    #[serde(default)]
    pub created_at: Option<String>,
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
