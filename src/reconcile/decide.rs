// SPDX-License-Identifier: MIT
//! What a runner type's token needs, decided from values alone: `Observed`
//! (what GitLab said) and the state entry give an `Action`.

use crate::clock;
use crate::secret::Secret;
use crate::state::Entry;

/// What GitLab said about a runner type's credential.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// No token in the state.
    Missing,
    /// GitLab rejected the token (403).
    Invalid,
    /// A valid token. (Tokens found elsewhere, in `config.toml` or a
    /// leftover file, are adopted by `plan` before this is decided.)
    Valid {
        token: Secret,
        /// The runner id verify answered (GitLab 15.10+).
        id: Option<u64>,
        expires_at: Option<i64>,
        obtained_at: Option<i64>,
    },
}

/// What to do for one runner type.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing.
    Keep,
    /// Store what verify told us (expiry, first-seen time) in the state.
    Record,
    /// Reset the token with itself, keeping the runner.
    Rotate { reason: String },
    /// Reset the token by runner id with the access token.
    Heal { id: u64 },
    /// Create a new runner; `orphan` is an old runner id left in GitLab.
    Create { orphan: Option<u64> },
}

/// Decide what a runner type needs. Pure: every input is a value.
pub fn decide(
    entry: &Entry,
    observed: &Observed,
    now: i64,
    rotate_before: i64,
    have_access_token: bool,
) -> Action {
    match observed {
        Observed::Missing => Action::Create { orphan: None },
        Observed::Invalid => match entry.id {
            Some(id) if have_access_token => Action::Heal { id },
            _ => Action::Create { orphan: entry.id },
        },
        Observed::Valid {
            id,
            expires_at,
            obtained_at,
            ..
        } => {
            if let Some(exp) = *expires_at {
                if now + rotate_before >= exp {
                    return Action::Rotate {
                        reason: format!("expires {}", clock::format(exp)),
                    };
                }
                if let Some(obt) = *obtained_at {
                    let due = obt + (exp - obt) * 3 / 4;
                    if obt < exp && now >= due {
                        return Action::Rotate {
                            reason: format!("past 75% of its lifetime ({})", clock::format(due)),
                        };
                    }
                }
            }
            if entry.token_expires_at != *expires_at
                || entry.token_obtained_at.is_none()
                || (id.is_some() && *id != entry.id)
            {
                Action::Record
            } else {
                Action::Keep
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: Option<u64>, expires: Option<i64>, obtained: Option<i64>) -> Entry {
        Entry {
            id,
            token: Some(Secret::new("t")),
            token_expires_at: expires,
            token_obtained_at: obtained,
            ..Entry::default()
        }
    }

    fn valid(expires: Option<i64>, obtained: Option<i64>) -> Observed {
        Observed::Valid {
            token: Secret::new("t"),
            id: Some(5),
            expires_at: expires,
            obtained_at: obtained,
        }
    }

    #[test]
    fn decisions() {
        let now = 1_000_000;
        let day = 86_400;
        let cases: Vec<(Entry, Observed, i64, bool, Action)> = vec![
            (
                Entry::default(),
                Observed::Missing,
                0,
                true,
                Action::Create { orphan: None },
            ),
            (
                entry(Some(5), None, Some(now)),
                Observed::Invalid,
                0,
                true,
                Action::Heal { id: 5 },
            ),
            (
                entry(Some(5), None, Some(now)),
                Observed::Invalid,
                0,
                false,
                Action::Create { orphan: Some(5) },
            ),
            (
                entry(None, None, Some(now)),
                Observed::Invalid,
                0,
                true,
                Action::Create { orphan: None },
            ),
            (
                entry(Some(5), None, Some(now)),
                valid(None, Some(now)),
                0,
                false,
                Action::Keep,
            ),
            // expiry learned → record it
            (
                entry(Some(5), None, Some(now)),
                valid(Some(now + 30 * day), Some(now)),
                0,
                false,
                Action::Record,
            ),
            // no obtained time (the original's file) → record it
            (
                entry(Some(5), None, None),
                valid(None, Some(now)),
                0,
                false,
                Action::Record,
            ),
            // 74% of the lifetime: keep; 75%: rotate
            (
                entry(Some(5), Some(now + 26 * day), Some(now - 74 * day)),
                valid(Some(now + 26 * day), Some(now - 74 * day)),
                0,
                false,
                Action::Keep,
            ),
            (
                entry(Some(5), Some(now + 25 * day), Some(now - 75 * day)),
                valid(Some(now + 25 * day), Some(now - 75 * day)),
                0,
                false,
                Action::Rotate {
                    reason: format!("past 75% of its lifetime ({})", clock::format(now)),
                },
            ),
            // --rotate-before
            (
                entry(Some(5), Some(now + day), Some(now)),
                valid(Some(now + day), Some(now)),
                2 * day,
                false,
                Action::Rotate {
                    reason: format!("expires {}", clock::format(now + day)),
                },
            ),
        ];
        for (i, (e, obs, before, pat, want)) in cases.into_iter().enumerate() {
            assert_eq!(decide(&e, &obs, now, before, pat), want, "case {i}");
        }
    }
}
