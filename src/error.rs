// SPDX-License-Identifier: MIT
//! The one error type of the tool: a kind that decides the exit code, and a
//! one-line message that already names the file or request it is about.

use std::fmt;

/// What went wrong, as far as the exit code is concerned (the table in
/// `EXIT_CODES`, `--help`, the README and the man page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad command line (64).
    Usage,
    /// Bad input data: a malformed file or a junk answer from GitLab (65).
    Data,
    /// GitLab cannot be reached, or keeps failing after retries (69).
    Unreachable,
    /// A call that issues a token got no answer after it may have reached
    /// GitLab (69 when nothing resolves it).
    Ambiguous,
    /// Internal error (70).
    Internal,
    /// An output file cannot be written (73).
    Write,
    /// Another run holds the lock (75).
    LockBusy,
    /// A permission or authentication refusal (77).
    Denied,
    /// A configuration problem (78).
    Config,
    /// Stopped by SIGINT (130).
    Interrupted,
    /// Stopped by SIGTERM (143).
    Terminated,
}

impl Kind {
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Usage => 64,
            Kind::Data => 65,
            Kind::Unreachable | Kind::Ambiguous => 69,
            Kind::Internal => 70,
            Kind::Write => 73,
            Kind::LockBusy => 75,
            Kind::Denied => 77,
            Kind::Config => 78,
            Kind::Interrupted => 130,
            Kind::Terminated => 143,
        }
    }
}

#[derive(Debug)]
pub struct Error {
    kind: Kind,
    msg: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: Kind, msg: impl Into<String>) -> Self {
        Error {
            kind,
            msg: msg.into(),
        }
    }
    pub fn usage(msg: impl Into<String>) -> Self {
        Self::new(Kind::Usage, msg)
    }
    pub fn data(msg: impl Into<String>) -> Self {
        Self::new(Kind::Data, msg)
    }
    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(Kind::Config, msg)
    }
    pub fn denied(msg: impl Into<String>) -> Self {
        Self::new(Kind::Denied, msg)
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(Kind::Internal, msg)
    }
    /// A failed read of `path`; a missing or unreadable input file is a configuration problem.
    pub fn read(path: &std::path::Path, err: std::io::Error) -> Self {
        let kind = if err.kind() == std::io::ErrorKind::PermissionDenied {
            Kind::Denied
        } else {
            Kind::Config
        };
        Self::new(kind, format!("failed to read {}: {}", path.display(), err))
    }
    /// A failed write of `path`.
    pub fn write(path: &std::path::Path, err: impl fmt::Display) -> Self {
        Self::new(
            Kind::Write,
            format!("failed to write {}: {}", path.display(), err),
        )
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }
    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
    /// Append a hint to the message, keeping the kind.
    pub fn hint(self, hint: impl fmt::Display) -> Self {
        Error {
            kind: self.kind,
            msg: format!("{}; {}", self.msg, hint),
        }
    }

    /// Prefix the message with more context, keeping the kind.
    pub fn context(self, what: impl fmt::Display) -> Self {
        Error {
            kind: self.kind,
            msg: format!("{}: {}", what, self.msg),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

/// The table printed by `--help` and documented in the README and man page.
/// (No `\` after the opening quote: it would eat the first row's indent.)
pub const EXIT_CODES: &str =
    "  0   success (for plan: nothing would change; for doctor: every check ok)
  2   plan only: changes are pending
  64  usage error (bad option or value)
  65  bad input data (malformed file, junk answer from GitLab)
  69  GitLab unreachable (connection errors, 5xx after retries, a rate limit past --wait)
  70  internal error
  73  cannot write an output file
  75  another run holds the lock
  77  permission or authentication refused
  78  configuration error
  130 stopped by SIGINT, 143 by SIGTERM (every token GitLab issued is saved)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_spec() {
        let table = [
            (Kind::Usage, 64),
            (Kind::Data, 65),
            (Kind::Unreachable, 69),
            (Kind::Ambiguous, 69),
            (Kind::Internal, 70),
            (Kind::Write, 73),
            (Kind::LockBusy, 75),
            (Kind::Denied, 77),
            (Kind::Config, 78),
            (Kind::Interrupted, 130),
            (Kind::Terminated, 143),
        ];
        for (kind, code) in table {
            assert_eq!(kind.exit_code(), code);
            assert!(
                EXIT_CODES.contains(&format!("  {code}  "))
                    || EXIT_CODES.contains(&format!("  {code} "))
                    || EXIT_CODES.contains(&format!(", {code} ")),
                "{code}"
            );
        }
    }

    #[test]
    fn exit_codes_are_aligned() {
        for line in EXIT_CODES.lines() {
            let (code, text) = line.split_at(6);
            assert!(code.starts_with("  "), "{line:?}");
            assert!(code.trim().chars().all(|c| c.is_ascii_digit()), "{line:?}");
            assert!(!text.starts_with(' ') && !text.is_empty(), "{line:?}");
        }
    }

    #[test]
    fn context_keeps_kind() {
        let e = Error::data("bad").context("failed to read x");
        assert_eq!(e.kind(), Kind::Data);
        assert_eq!(e.to_string(), "failed to read x: bad");
    }
}
