// SPDX-License-Identifier: MIT
//! The one rule for what GitLab hands back: GitLab may be compromised, or a
//! man in the middle may hold a CA this host trusts, and the tool runs as
//! root on every node. A token is GitLab's alphabet within a length bound
//! before it is stored or rendered; an id is in `1..=i64::MAX` (what
//! gitlab-runner's `id` key and TOML integers can hold); text shown to a
//! person has its control characters escaped and is cut to a bound.

/// The longest runner token taken: GitLab's longest form (a routable token,
/// up to 300 payload characters, with an instance prefix, partition and
/// CRC) fits with room to spare.
pub const TOKEN_MAX: usize = 512;

/// What is wrong with `token` as a runner token, if anything: GitLab's
/// tokens are made of ASCII letters, digits, `-`, `_` and `.` (`glrt-`,
/// `glrt-t1_…`, `glrtr-…`, routable `glrt-<payload>.01.<len><crc>`,
/// `mycorp-glrt-…`, the 20-character tokens of older GitLabs). Nothing else
/// can change the meaning of the TOML or the shell line it ends up in.
pub fn token_problem(token: &str) -> Option<String> {
    if token.is_empty() {
        return Some("it is empty".into());
    }
    if token.len() > TOKEN_MAX {
        return Some(format!(
            "it is {} bytes long (at most {TOKEN_MAX})",
            token.len()
        ));
    }
    let bad = token
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))?;
    Some(format!(
        "it holds {bad:?}; a runner token is letters, digits, '-', '_' and '.'"
    ))
}

/// The largest id taken: gitlab-runner's `id` is an int64, and so is a TOML
/// integer.
pub const ID_MAX: u64 = i64::MAX as u64;

/// Is `id` a runner id this tool can store and render?
pub fn id_ok(id: u64) -> bool {
    (1..=ID_MAX).contains(&id)
}

/// How much of a text from GitLab a message shows.
pub const SHOWN_MAX: usize = 120;

/// `text` from GitLab as a person sees it: control characters (ESC, BEL,
/// CR, LF …) and other invisible ones escaped as `{:?}` does, cut to
/// [`SHOWN_MAX`] characters with `…`, so an answer can neither drive a
/// terminal nor forge a log line.
pub fn shown(text: &str) -> String {
    shown_max(text, SHOWN_MAX)
}

/// [`shown`] with another bound.
pub fn shown_max(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200b}'..='\u{200f}') {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_form_gitlab_issues_is_taken() {
        for t in [
            "glrt-AbCdEfGh0123456789xy",
            "glrt-t1_AbCdEfGh0123456789xy",
            "glrt-t3_AbCd-Ef_Gh0123456789",
            "glrtr-AbCdEfGh0123456789xy",
            "t3_AbCdEfGh0123456789xy",
            "glrt-cHJvamVjdF9pZD0xMjM0NQpvcmc9MQ.01.1a0x9k7zq",
            "mycorp-glrt-AbCdEfGh0123456789xy",
            "abcdefghij0123456789",
            "t",
        ] {
            assert_eq!(token_problem(t), None, "{t}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        let long = "a".repeat(TOKEN_MAX + 1);
        let cases = [
            ("", "it is empty"),
            ("glrt-AAAA\"\n  executor = \"custom\"", "it holds '\"'"),
            ("glrt-AAAA\nx", "it holds '\\n'"),
            ("glrt-$HOME", "it holds '$'"),
            ("glrt-a b", "it holds ' '"),
            ("glrt-é", "it holds 'é'"),
            (long.as_str(), "513 bytes long (at most 512)"),
        ];
        for (t, want) in cases {
            let p = token_problem(t).unwrap_or_default();
            assert!(p.contains(want), "{t:?}: {p}");
        }
    }

    #[test]
    fn ids_fit_an_int64() {
        assert!(!id_ok(0));
        assert!(id_ok(1));
        assert!(id_ok(ID_MAX));
        assert!(!id_ok(ID_MAX + 1));
        assert!(!id_ok(u64::MAX));
    }

    #[test]
    fn text_is_escaped_and_cut() {
        assert_eq!(shown("node12-shell"), "node12-shell");
        assert_eq!(
            shown("x\u{1b}]0;owned\u{7}\r\n<3>forged"),
            "x\\u{1b}]0;owned\\u{7}\\r\\n<3>forged"
        );
        let long = "é".repeat(500);
        let s = shown(&long);
        assert_eq!(s.chars().count(), SHOWN_MAX + 1);
        assert!(s.ends_with('…'));
        assert_eq!(shown_max("abcdef", 3), "abc…");
    }
}
