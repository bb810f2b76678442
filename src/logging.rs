// SPDX-License-Identifier: MIT
//! Logging: which records pass (`-v`, `-q`, the dependencies' cap, the
//! summary) and how a line looks. Under journald (`JOURNAL_STREAM` names
//! stderr) every line starts with its syslog priority (`<3>` … `<7>`) and
//! carries no timestamp and no module path, so `journalctl -p warning`
//! finds the problems; elsewhere simple_logger's format, with a short
//! component (`reconcile`, `gitlab`) in place of the Rust module path.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};

/// The target of the one summary line, shown even at `-q`.
const SUMMARY: &str = "gitlab_runner_auth::summary";
const CRATE: &str = "gitlab_runner_auth";

/// Installs the logger for this run.
pub fn init(verbose: u8, quiet: bool) {
    let filter = Filter::new(verbose, quiet);
    log::set_max_level(filter.max());
    let logger: Box<dyn Log> = if stderr_is_journal(std::env::var("JOURNAL_STREAM").ok()) {
        Box::new(Journal { filter })
    } else {
        let inner = simple_logger::SimpleLogger::new()
            .with_level(LevelFilter::Trace)
            .with_colors(std::io::stderr().is_terminal());
        Box::new(Terminal { filter, inner })
    };
    let _ = log::set_boxed_logger(logger);
}

/// Levels: the default from `-v`/`-q`, and per-target overrides matched by
/// prefix, as simple_logger matches them.
struct Filter {
    default: LevelFilter,
    targets: [(&'static str, LevelFilter); 4],
}

impl Filter {
    fn new(verbose: u8, quiet: bool) -> Filter {
        let default = match (quiet, verbose) {
            (true, _) => LevelFilter::Warn,
            (false, 0) => LevelFilter::Info,
            (false, 1) => LevelFilter::Debug,
            (false, _) => LevelFilter::Trace,
        };
        // ureq redacts headers at debug, but its protocol layer dumps raw
        // requests (tokens included) at trace: dependencies stop at debug.
        let deps = if verbose >= 2 {
            LevelFilter::Debug
        } else {
            LevelFilter::Warn
        };
        Filter {
            default,
            targets: [
                (SUMMARY, LevelFilter::Info),
                ("ureq_proto", deps),
                ("rustls", deps),
                ("ureq", deps),
            ],
        }
    }

    fn level(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .find(|(prefix, _)| target.starts_with(prefix))
            .map_or(self.default, |&(_, level)| level)
    }

    fn max(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|&(_, level)| level)
            .fold(self.default, Ord::max)
    }
}

/// True when `JOURNAL_STREAM` (`DEVICE:INODE`, set by systemd) names the
/// stream stderr is: a tool started from a service's shell with stderr
/// redirected elsewhere keeps the terminal format.
fn stderr_is_journal(journal_stream: Option<String>) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = journal_stream.as_deref().and_then(parse_stream) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

fn parse_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// journald's format: `<N>` then the message, for each of its lines.
struct Journal {
    filter: Filter,
}

impl Log for Journal {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.filter.level(metadata.target())
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            // one write per record: lines of concurrent verifies never mix
            let _ = std::io::stderr().write_all(journal_line(record).as_bytes());
        }
    }

    fn flush(&self) {}
}

/// The syslog priority journald reads from a line's `<N>` prefix.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// A record as journald lines: every line starts with the priority, since
/// journald makes each line an entry of its own.
fn journal_line(record: &Record) -> String {
    let text = inert(&record.args().to_string());
    let priority = priority(record.level());
    let mut out = String::with_capacity(text.len() + 4);
    for line in text.split('\n') {
        let _ = writeln!(out, "<{priority}>{line}");
    }
    out
}

/// A message with every control character but the tab escaped (`\u{1b}`,
/// `\n`): a log record is one line, whatever a text from GitLab holds, so
/// it never drives a terminal (ESC, BEL), overwrites itself (CR) or forges
/// another line or journal entry (LF).
fn inert(text: &str) -> String {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return text.to_string();
    }
    text.chars()
        .map(|c| match c {
            '\t' => c.to_string(),
            c if c.is_control() => c.escape_debug().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// simple_logger's format, with a short component for the target.
struct Terminal {
    filter: Filter,
    inner: simple_logger::SimpleLogger,
}

impl Log for Terminal {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.filter.level(metadata.target())
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            let text = inert(&record.args().to_string());
            self.inner.log(&shortened(record, format_args!("{text}")));
        }
    }

    fn flush(&self) {}
}

/// The record with its target cut to the component an admin can read, and
/// `args` as its message.
fn shortened<'a>(record: &Record<'a>, args: std::fmt::Arguments<'a>) -> Record<'a> {
    Record::builder()
        .args(args)
        .level(record.level())
        .target(component(record.target()))
        .module_path(None)
        .file(record.file())
        .line(record.line())
        .build()
}

/// `gitlab_runner_auth::reconcile::observe` → `reconcile`; the crate root →
/// the program's name; a dependency (`ureq::unversioned::transport`) → its
/// crate (`ureq`).
fn component(target: &str) -> &str {
    match target.strip_prefix(CRATE) {
        Some("") => "gitlab-runner-auth",
        Some(rest) if rest.starts_with("::") => rest[2..].split("::").next().unwrap_or(rest),
        _ => target.split("::").next().unwrap_or(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_in_every_line() {
        assert_eq!(
            inert("a\u{1b}]0;x\u{7}\r\nb\tc"),
            "a\\u{1b}]0;x\\u{7}\\r\\nb\tc"
        );
        assert_eq!(inert("plain"), "plain");
    }

    fn record<'a>(level: Level, target: &'a str, args: std::fmt::Arguments<'a>) -> Record<'a> {
        Record::builder()
            .level(level)
            .target(target)
            .module_path_static(Some("gitlab_runner_auth::reconcile::apply"))
            .args(args)
            .build()
    }

    #[test]
    fn journal_lines_start_with_the_priority_and_nothing_else() {
        for (level, want) in [
            (Level::Error, "<3>failed to write /x: denied\n"),
            (Level::Warn, "<4>failed to write /x: denied\n"),
            (Level::Info, "<6>failed to write /x: denied\n"),
            (Level::Debug, "<7>failed to write /x: denied\n"),
            (Level::Trace, "<7>failed to write /x: denied\n"),
        ] {
            let got = journal_line(&record(
                level,
                "gitlab_runner_auth::reconcile::apply",
                format_args!("failed to write {}: denied", "/x"),
            ));
            // exact: no timestamp, no level word, no module path
            assert_eq!(got, want, "{level}");
        }
    }

    #[test]
    fn a_journal_record_is_one_entry_with_its_priority() {
        // a line break in a record (text from GitLab) never starts an entry
        let got = journal_line(&record(Level::Warn, CRATE, format_args!("one\n<3>two")));
        assert_eq!(got, "<4>one\\n<3>two\n");
    }

    #[test]
    fn components_are_short() {
        for (target, want) in [
            ("gitlab_runner_auth", "gitlab-runner-auth"),
            ("gitlab_runner_auth::reconcile", "reconcile"),
            ("gitlab_runner_auth::reconcile::observe", "reconcile"),
            ("gitlab_runner_auth::gitlab", "gitlab"),
            (SUMMARY, "summary"),
            ("gitlab_runner_authx::y", "gitlab_runner_authx"),
            ("ureq::unversioned::transport::tcp", "ureq"),
            ("rustls", "rustls"),
            ("", ""),
        ] {
            assert_eq!(component(target), want, "{target}");
        }
    }

    #[test]
    fn the_terminal_record_has_the_component_and_no_module_path() {
        let r = record(
            Level::Info,
            "gitlab_runner_auth::reconcile::apply",
            format_args!("created shell runner 7"),
        );
        let short = shortened(&r, *r.args());
        assert_eq!(short.target(), "reconcile");
        assert_eq!(short.module_path(), None);
        assert_eq!(short.level(), Level::Info);
        assert_eq!(short.args().to_string(), "created shell runner 7");
    }

    #[test]
    fn levels_follow_verbose_and_quiet() {
        use LevelFilter::*;
        // (verbose, quiet, target, level wanted)
        for (verbose, quiet, target, want) in [
            (0, false, "gitlab_runner_auth::reconcile", Info),
            (1, false, "gitlab_runner_auth::gitlab", Debug),
            (2, false, "gitlab_runner_auth::gitlab", Trace),
            (0, true, "gitlab_runner_auth", Warn),
            // the summary is shown even at -q
            (0, true, SUMMARY, Info),
            (2, false, SUMMARY, Info),
            // dependencies: warn, at -vv debug, never trace (raw requests)
            (0, false, "ureq::unversioned::transport", Warn),
            (1, false, "ureq_proto::client", Warn),
            (2, false, "ureq_proto::client", Debug),
            (3, false, "rustls::client", Debug),
            (2, false, "ureq", Debug),
        ] {
            assert_eq!(
                Filter::new(verbose, quiet).level(target),
                want,
                "-v×{verbose} -q={quiet} {target}"
            );
        }
        assert_eq!(Filter::new(0, true).max(), Info);
        assert_eq!(Filter::new(2, false).max(), Trace);
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        assert_eq!(parse_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_stream("8"), None);
        assert_eq!(parse_stream("x:1"), None);
        assert!(!stderr_is_journal(None));
        assert!(!stderr_is_journal(Some("0:0".into())));
    }
}
