// SPDX-License-Identifier: MIT
//! Facts about this host: hostname, cluster name, batch scheduler, and the
//! description and tags a runner of a given type is registered with.

use crate::error::{Error, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Scheduler commands and the tag each one implies, in lookup order.
const SCHEDULERS: &[(&str, &str)] = &[
    ("sbatch", "slurm"),
    ("salloc", "slurm"),
    ("bsub", "lsf"),
    ("qsub", "pbs"),
    ("cqsub", "cobalt"),
    ("flux", "flux"),
];

/// Where gitlab-runner (through denisbrodbeck/machineid) reads the machine id.
const MACHINE_ID_FILES: &[&str] = &["/var/lib/dbus/machine-id", "/etc/machine-id"];

/// The `system_id` gitlab-runner identifies this host with: the one in its
/// state file beside `config.toml`, else the one it derives on its first
/// start (`s_` + 12 hex digits of HMAC-SHA256 keyed by the machine id over
/// `gitlab-runner`). `None` when gitlab-runner would pick a random one.
pub fn system_id(state_file: &Path) -> Option<String> {
    let text =
        crate::trust::read_text(state_file, crate::trust::Class::Input).unwrap_or_else(|e| {
            log::warn!("ignoring {}: {e}", state_file.display());
            None
        });
    if let Some(text) = text {
        let id = text.trim();
        let valid = id.len() == 14
            && (id.starts_with("s_") || id.starts_with("r_"))
            && id[2..].chars().all(|c| c.is_ascii_alphanumeric());
        if valid {
            return Some(id.to_string());
        }
        log::warn!(
            "ignoring {}: not a gitlab-runner system id",
            state_file.display()
        );
    }
    MACHINE_ID_FILES
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.trim().to_string())
        .find(|t| !t.is_empty())
        .map(|machine_id| derive_system_id(&machine_id))
}

/// gitlab-runner's `system_id` for a machine id.
pub fn derive_system_id(machine_id: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, machine_id.as_bytes());
    let tag = ring::hmac::sign(&key, b"gitlab-runner");
    let hex: String = tag.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("s_{hex}")
}

/// What a runner tag cannot do, if `name` does it (`runner tags cannot …`):
/// GitLab splits `tag_list` on commas and strips whitespace.
pub fn tag_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("be empty")
    } else if name.len() > 255 {
        Some("be longer than 255 bytes")
    } else if name.contains(',') {
        Some("hold a comma")
    } else if name.chars().any(char::is_whitespace) {
        Some("hold whitespace")
    } else if name.chars().any(char::is_control) {
        Some("hold a control character")
    } else {
        None
    }
}

/// A usage error for a `--hostname` or `--tag` GitLab would split or reject;
/// `{:?}` keeps control characters out of the log.
pub fn check_tag(option: &str, value: &str) -> Result<()> {
    match tag_problem(value) {
        Some(why) => Err(Error::usage(format!(
            "invalid {option} {value:?}: runner tags cannot {why}"
        ))),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub hostname: String,
    pub scheduler: Option<&'static str>,
    pub extra_tags: Vec<String>,
}

impl Host {
    /// `hostname` overrides the kernel's; `path` is the `PATH` searched for
    /// a scheduler.
    pub fn detect(
        hostname: Option<String>,
        path: Option<&str>,
        extra_tags: Vec<String>,
    ) -> Result<Host> {
        let hostname = match hostname {
            Some(h) => {
                check_tag("--hostname", &h)?;
                h
            }
            None => {
                let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map_err(|e| {
                        Error::config(format!("failed to read the hostname: {e}; set --hostname"))
                    })?
                    .trim()
                    .to_string();
                // the machine's, not the command line's: a configuration problem
                if let Some(why) = tag_problem(&h) {
                    return Err(Error::config(format!(
                        "invalid kernel hostname {h:?}: runner tags cannot {why}; set --hostname"
                    )));
                }
                h
            }
        };
        Ok(Host {
            hostname,
            scheduler: path.and_then(find_scheduler),
            extra_tags,
        })
    }

    /// The hostname without its digits (`quartz12` → `quartz`).
    pub fn cluster(&self) -> String {
        self.hostname
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .collect()
    }

    pub fn description(&self, runner_type: &str) -> String {
        format!("{}-{}", self.hostname, runner_type)
    }

    /// The ownership rule: a runner in GitLab is this host's runner of type
    /// `ty` exactly when its description is `<hostname>-<ty>` and its tags
    /// hold both the hostname and `ty`, or (a runner the original script
    /// registered) its tag set is exactly the one this host registers for
    /// `ty`. Compared exactly, as GitLab compares tags: the cluster tag
    /// never makes another host's runner ours. The tag set never outweighs
    /// a description that names another host's runner of that type
    /// (`login42-shell` whose `login42` tag was removed; two hosts given the
    /// same `--tag`s).
    pub fn owns(&self, description: &str, tags: &[String], ty: &str) -> bool {
        let has = |t: &str| tags.iter().any(|x| x == t);
        let mine = self.description(ty);
        if description == mine {
            return (has(&self.hostname) && has(ty)) || same_set(tags, &self.tags(ty));
        }
        let names_another = description
            .strip_suffix(ty)
            .and_then(|d| d.strip_suffix('-'))
            .is_some_and(|h| !h.is_empty());
        !names_another && same_set(tags, &self.tags(ty))
    }

    /// The runner type for which a runner is this host's, by [`Host::owns`],
    /// whether or not that type is configured; `None` for another host's
    /// runner, or when the tags alone would fit more than one type.
    pub fn owned_type(&self, description: &str, tags: &[String]) -> Option<String> {
        if let Some(ty) = description.strip_prefix(&format!("{}-", self.hostname))
            && !ty.is_empty()
            && self.owns(description, tags, ty)
        {
            return Some(ty.to_string());
        }
        let cluster = self.cluster();
        let mut fits = tags
            .iter()
            .filter(|t| **t != self.hostname && **t != cluster && self.owns(description, tags, t));
        match (fits.next(), fits.next()) {
            (Some(t), None) => Some(t.clone()),
            _ => None,
        }
    }

    /// hostname, cluster (when it differs), type, scheduler (batch only),
    /// then every `--tag`; without duplicates.
    pub fn tags(&self, runner_type: &str) -> Vec<String> {
        let mut tags = vec![self.hostname.clone()];
        let cluster = self.cluster();
        let mut push = |t: &str| {
            if !t.is_empty() && !tags.iter().any(|x| x == t) {
                tags.push(t.to_string());
            }
        };
        push(&cluster);
        push(runner_type);
        if runner_type == "batch"
            && let Some(s) = self.scheduler
        {
            push(s);
        }
        for t in &self.extra_tags {
            push(t);
        }
        tags
    }
}

/// Do `a` and `b` hold the same tags (order and repeats aside)?
fn same_set(a: &[String], b: &[String]) -> bool {
    a.iter().all(|t| b.contains(t)) && b.iter().all(|t| a.contains(t))
}

fn find_scheduler(path: &str) -> Option<&'static str> {
    SCHEDULERS.iter().find_map(|(cmd, tag)| {
        std::env::split_paths(path)
            .any(|dir| is_executable(&dir.join(cmd)))
            .then_some(*tag)
    })
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, scheduler: Option<&'static str>, extra: &[&str]) -> Host {
        Host {
            hostname: name.into(),
            scheduler,
            extra_tags: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn tags_per_type() {
        let cases = [
            (
                host("quartz12", Some("slurm"), &[]),
                "batch",
                vec!["quartz12", "quartz", "batch", "slurm"],
            ),
            (
                host("quartz12", Some("slurm"), &[]),
                "shell",
                vec!["quartz12", "quartz", "shell"],
            ),
            (
                host("login", None, &["x", "login"]),
                "batch",
                vec!["login", "batch", "x"],
            ),
            (host("42", None, &[]), "shell", vec!["42", "shell"]),
        ];
        for (h, ty, want) in cases {
            assert_eq!(h.tags(ty), want);
        }
        assert_eq!(
            host("quartz12", None, &[]).description("shell"),
            "quartz12-shell"
        );
    }

    #[test]
    fn ownership_is_exact() {
        let tags = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let login42 = host("login42", None, &[]);
        let login = host("login", None, &[]);
        let login_tagged = host("login", None, &["login"]);
        let cases = [
            // (host, description, tags, type it is this host's, if any)
            (
                &login42,
                "login42-shell",
                tags(&["login42", "login", "shell"]),
                Some("shell"),
            ),
            // the cluster tag never makes login42's runner login's
            (
                &login,
                "login42-shell",
                tags(&["login42", "login", "shell"]),
                None,
            ),
            (
                &login,
                "login-shell",
                tags(&["login", "shell"]),
                Some("shell"),
            ),
            // a description prefix is not a match: login-gpu's runner
            (
                &login_tagged,
                "login-gpu-shell",
                tags(&["login-gpu", "shell", "login"]),
                None,
            ),
            // description and both tags: extra or missing other tags drifted
            (
                &login42,
                "login42-shell",
                tags(&["login42", "shell", "x"]),
                Some("shell"),
            ),
            // description alone is not enough
            (&login42, "login42-shell", tags(&["login", "shell"]), None),
            // the original script's runners: the exact tag set, any description
            (
                &login42,
                "whatever",
                tags(&["shell", "login", "login42"]),
                Some("shell"),
            ),
            (
                &login42,
                "whatever",
                tags(&["login42", "login", "shell", "x"]),
                None,
            ),
            (&login42, "renamed", tags(&["login42", "oops"]), None),
            // tags are case-sensitive in GitLab
            (
                &login42,
                "login42-shell",
                tags(&["Login42", "login", "shell"]),
                None,
            ),
            // a type not configured is still this host's (for --prune)
            (
                &login42,
                "login42-gpu",
                tags(&["login42", "gpu"]),
                Some("gpu"),
            ),
        ];
        for (h, desc, t, want) in cases {
            assert_eq!(
                h.owned_type(desc, &t).as_deref(),
                want,
                "{} {desc} {t:?}",
                h.hostname
            );
            if let Some(ty) = want {
                assert!(h.owns(desc, &t, ty));
            }
            assert!(!h.owns(desc, &t, "batch") || want == Some("batch"));
        }
        // login42's runner that lost its hostname tag is not login's
        assert_eq!(
            login.owned_type("login42-shell", &tags(&["login", "shell"])),
            None
        );
        // two hosts given the same --tags have the same tag sets
        let a = host("login1", None, &["login1", "login2"]);
        let b_tags = host("login2", None, &["login1", "login2"]).tags("shell");
        assert_eq!(a.owned_type("login2-shell", &b_tags), None);
        assert_eq!(
            a.owned_type("login1-shell", &b_tags).as_deref(),
            Some("shell")
        );
        // tags that fit two types by the exact set are nobody's
        let both = host("n1", None, &["a", "b"]);
        assert_eq!(both.owned_type("x", &tags(&["n1", "n", "a", "b"])), None);
        assert_eq!(
            both.owned_type("n1-a", &tags(&["n1", "n", "a", "b"]))
                .as_deref(),
            Some("a")
        );
    }

    #[test]
    fn tags_gitlab_would_split_or_reject() {
        let long = "a".repeat(256);
        let cases = [
            ("node12", None),
            ("x&tag_list=", None),
            ("a.b-c_d~e", None),
            ("ünïcode", None),
            (&long[1..], None),
            ("", Some("be empty")),
            (&long, Some("be longer than 255 bytes")),
            ("a,b", Some("hold a comma")),
            ("a b", Some("hold whitespace")),
            ("a\tb", Some("hold whitespace")),
            ("a\n", Some("hold whitespace")),
            ("a\u{a0}b", Some("hold whitespace")),
            ("a\u{2028}b", Some("hold whitespace")),
            ("a\u{1b}[31m", Some("hold a control character")),
            ("\0", Some("hold a control character")),
            ("a\u{7f}", Some("hold a control character")),
            ("a\u{85}", Some("hold whitespace")),
            ("a\u{9b}", Some("hold a control character")),
        ];
        for (name, want) in cases {
            assert_eq!(tag_problem(name), want, "{name:?}");
        }
        let e = check_tag("--tag", "a\u{1b}[31mred").unwrap_err();
        assert_eq!(e.exit_code(), 64);
        assert_eq!(
            e.to_string(),
            r#"invalid --tag "a\u{1b}[31mred": runner tags cannot hold a control character"#
        );
        let e = Host::detect(Some("a b".into()), None, Vec::new()).unwrap_err();
        assert_eq!(e.exit_code(), 64, "a given hostname is a usage error");
        assert_eq!(
            e.to_string(),
            r#"invalid --hostname "a b": runner tags cannot hold whitespace"#
        );
    }

    #[test]
    fn system_ids() {
        // HMAC-SHA256(key = machine id, "gitlab-runner"), as gitlab-runner computes it
        assert_eq!(
            derive_system_id("0123456789abcdef0123456789abcdef"),
            "s_ee3af03959fe"
        );
        let dir = std::env::temp_dir().join(format!("gra-sid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(".runner_system_id");
        for (text, want) in [
            ("s_0123456789ab\n", "s_0123456789ab"),
            ("r_ABCDEFabcdef", "r_ABCDEFabcdef"),
        ] {
            std::fs::write(&p, text).unwrap();
            assert_eq!(system_id(&p).as_deref(), Some(want), "{text}");
        }
        for bad in ["x_0123456789ab", "s_0123", "s_0123456789a!"] {
            std::fs::write(&p, bad).unwrap();
            assert_ne!(system_id(&p).as_deref(), Some(bad));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn finds_scheduler_on_path() {
        let dir = std::env::temp_dir().join(format!("gra-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bsub = dir.join("bsub");
        std::fs::write(&bsub, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bsub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("/nonexistent:{}", dir.display());
        assert_eq!(find_scheduler(&path), Some("lsf"));
        std::fs::set_permissions(&bsub, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find_scheduler(&path), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
