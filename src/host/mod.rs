// SPDX-License-Identifier: MIT
//! Facts about this host: hostname, cluster name, batch scheduler, the
//! description and tags a runner of a given type is registered with, which
//! runners GitLab shows are this host's (the ownership rule), and which
//! tags GitLab shows are this host's to repair. The tags read from the
//! host (`--auto-tags`) are in `tags`.

mod tags;

pub use tags::AutoTags;

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
    /// Tags from the host (`--auto-tags`); none by default.
    pub auto: AutoTags,
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
            auto: AutoTags::default(),
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
    /// `ty` ([`Host::registers_exactly`]). Compared exactly, as GitLab
    /// compares tags: the cluster tag never makes another host's runner
    /// ours. The tag set never outweighs a description that names another
    /// host's runner of that type (`login42-shell` whose `login42` tag was
    /// removed; two hosts given the same `--tag`s).
    pub fn owns(&self, description: &str, tags: &[String], ty: &str) -> bool {
        let has = |t: &str| tags.iter().any(|x| x == t);
        let mine = self.description(ty);
        if description == mine {
            return (has(&self.hostname) && has(ty)) || self.registers_exactly(tags, ty);
        }
        let names_another = description
            .strip_suffix(ty)
            .and_then(|d| d.strip_suffix('-'))
            .is_some_and(|h| !h.is_empty());
        !names_another && self.registers_exactly(tags, ty)
    }

    /// Could a runner listed with `description` be this host's by
    /// [`Host::owns`]? Lists show no tags, so only its details can tell;
    /// this says whose details are worth reading: a description `H-…` of
    /// this host, and one that names no host at all (no `-`: what an admin
    /// or the original script may have given a runner of this host's exact
    /// tag set). A description `X-…` of another host is not read: it could
    /// be this host's only by its exact tag set for another type than the
    /// one it names, which no registration makes.
    pub fn could_own(&self, description: &str) -> bool {
        description
            .strip_prefix(&self.hostname)
            .is_some_and(|rest| rest.starts_with('-'))
            || !description.contains('-')
    }

    /// The "exact tag set" half of [`Host::owns`]: `tags` is the set this
    /// host registers for `ty` without `--auto-tags` (hostname, cluster,
    /// type, scheduler, `--tag`s: what the original script registered, and
    /// every runner made before `--auto-tags` was turned on), plus any tags
    /// that this host's auto-tag kinds could have set ([`AutoTags::could_set`]):
    /// those come and go with the hardware and the OS, so a runner made with
    /// yesterday's `rhel8` or a GPU since removed stays this host's. Without
    /// `--auto-tags` this is the exact set, as before; a tag of anything else
    /// (one an admin added by hand) still makes the set not this host's.
    pub fn registers_exactly(&self, tags: &[String], ty: &str) -> bool {
        let base = self.fixed_tags(ty);
        let rest: Vec<String> = tags
            .iter()
            .filter(|t| base.contains(t) || !self.auto.could_set(t))
            .cloned()
            .collect();
        same_set(&rest, &base)
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
    /// the tags from the host (`--auto-tags`, in its order), then every
    /// `--tag`; without duplicates.
    pub fn tags(&self, runner_type: &str) -> Vec<String> {
        self.tag_list(runner_type, &self.auto.tags)
    }

    /// [`Host::tags`] without the tags from the host.
    fn fixed_tags(&self, runner_type: &str) -> Vec<String> {
        self.tag_list(runner_type, &[])
    }

    fn tag_list(&self, runner_type: &str, auto: &[String]) -> Vec<String> {
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
        for t in auto.iter().chain(&self.extra_tags) {
            push(t);
        }
        tags
    }

    /// The tag list to put on this host's runner of type `ty` that GitLab
    /// shows with `have`, or `None` when its tags need no repair: see
    /// [`repair_tags`]. "Could this host have set it" is: one of
    /// [`Host::tags`] now, or a tag one of the auto-tag kinds asked for
    /// could produce ([`AutoTags::could_set`]).
    pub fn repaired_tags(&self, ty: &str, have: &[String]) -> Option<Vec<String>> {
        repair_tags(have, &self.tags(ty), |t| self.auto.could_set(t))
    }
}

/// The drift rule for tags, pure: given the tags GitLab shows on one of
/// this host's runners (`have`) and the tags this host sets on it now
/// (`want`, [`Host::tags`]), the list to `PUT`, or `None` when nothing needs
/// to change. There is no record of what this host set before, so every tag
/// in `have` is one of three:
///
/// - **wanted** (in `want`): must be there; a missing one is added. This is
///   how a GPU put in later, a new `--tag` or a new OS release reaches a
///   runner made before.
/// - **stale**: not wanted, but this host could have set it earlier
///   (`ours(tag)`: a tag one of its `--auto-tags` kinds could produce — any
///   of `x86_64`/`aarch64`/`ppc64le`, `<os-release ID><digits>` for this
///   host's ID, `gpu`/`nvidia`/`amd`): removed. That is how `gpu`/`nvidia`
///   leave a runner whose card was taken out, and `rhel8` one whose host
///   was upgraded to `rhel9`.
/// - **foreign**: anything else, e.g. a tag an admin added in GitLab by
///   hand: kept, always. So are the values of an old `--tag` or `env:NAME`
///   and a scheduler no longer on `PATH` (nothing says this host set them),
///   and the tags of an auto-tag kind no longer asked for.
///
/// The answer is `want` in its order, then the foreign tags in GitLab's
/// order: deterministic, so the next run finds nothing to do. Compared
/// exactly, as GitLab compares tags (`GPU` is not `gpu`).
pub fn repair_tags(
    have: &[String],
    want: &[String],
    ours: impl Fn(&str) -> bool,
) -> Option<Vec<String>> {
    let missing = want.iter().any(|t| !have.contains(t));
    let stale = have.iter().any(|t| !want.contains(t) && ours(t));
    if !missing && !stale {
        return None;
    }
    let mut tags = want.to_vec();
    for t in have {
        if !ours(t) && !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    Some(tags)
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

/// What the `arch` item can produce: `uname -m` of the architectures this
#[cfg(test)]
mod tests {
    use super::tags::tests::{fixture, no_env, strings};
    use super::*;

    fn host(name: &str, scheduler: Option<&'static str>, extra: &[&str]) -> Host {
        Host {
            hostname: name.into(),
            scheduler,
            extra_tags: extra.iter().map(|s| s.to_string()).collect(),
            auto: AutoTags::default(),
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

    /// `host` with `--auto-tags` as on the fixture host `root`.
    fn with_auto(mut h: Host, items: &[&str], root: &str) -> Host {
        h.auto = AutoTags::detect(&strings(items), &fixture(root), &no_env).unwrap();
        h
    }

    #[test]
    fn auto_tags_come_after_the_fixed_ones_and_before_tag() {
        let h = with_auto(
            host("quartz12", Some("slurm"), &["x", "gpu"]),
            &["gpu", "arch", "os"],
            "nvidia",
        );
        assert_eq!(
            h.tags("batch"),
            vec![
                "quartz12", "quartz", "batch", "slurm", "gpu", "nvidia", "x86_64", "rhel9", "x"
            ]
        );
        assert_eq!(
            h.tags("shell"),
            vec![
                "quartz12", "quartz", "shell", "gpu", "nvidia", "x86_64", "rhel9", "x"
            ]
        );
    }

    #[test]
    fn drift_repairs_only_the_tags_this_host_sets() {
        let ours = |t: &str| {
            [
                "x86_64", "aarch64", "rhel8", "rhel9", "gpu", "nvidia", "amd",
            ]
            .contains(&t)
        };
        // (what, GitLab has, this host sets, the PUT's tags)
        type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], Option<&'a [&'a str]>);
        let cases: &[Case] = &[
            (
                "in step",
                &["n1", "n", "shell"],
                &["n1", "n", "shell"],
                None,
            ),
            (
                "order aside",
                &["shell", "n1", "n"],
                &["n1", "n", "shell"],
                None,
            ),
            (
                "a hand-added tag is kept, no PUT for it",
                &["n1", "n", "shell", "bigmem"],
                &["n1", "n", "shell"],
                None,
            ),
            (
                "a missing tag is added, the hand-added kept after ours",
                &["bigmem", "n1", "shell"],
                &["n1", "n", "shell"],
                Some(&["n1", "n", "shell", "bigmem"]),
            ),
            (
                "a GPU put in later",
                &["n1", "n", "shell", "x86_64", "rhel9"],
                &["n1", "n", "shell", "x86_64", "rhel9", "gpu", "nvidia"],
                Some(&["n1", "n", "shell", "x86_64", "rhel9", "gpu", "nvidia"]),
            ),
            (
                "the card taken out",
                &["n1", "n", "shell", "x86_64", "gpu", "nvidia", "bigmem"],
                &["n1", "n", "shell", "x86_64"],
                Some(&["n1", "n", "shell", "x86_64", "bigmem"]),
            ),
            (
                "an OS upgrade",
                &["n1", "n", "shell", "rhel8"],
                &["n1", "n", "shell", "rhel9"],
                Some(&["n1", "n", "shell", "rhel9"]),
            ),
            (
                "an old --tag or env: value stays (nothing says it was ours)",
                &["n1", "n", "shell", "old-site"],
                &["n1", "n", "shell", "new-site"],
                Some(&["n1", "n", "shell", "new-site", "old-site"]),
            ),
            (
                "case matters, as in GitLab: GPU is an admin's",
                &["n1", "n", "shell", "GPU"],
                &["n1", "n", "shell"],
                None,
            ),
            (
                "a tag this host sets that the kinds could also set stays",
                &["n1", "n", "shell", "gpu"],
                &["n1", "n", "shell", "gpu"],
                None,
            ),
        ];
        for (what, have, want, put) in cases {
            let got = repair_tags(&strings(have), &strings(want), ours);
            assert_eq!(got, put.map(strings), "{what}");
            // the repaired list needs no further repair
            if let Some(tags) = got {
                assert_eq!(repair_tags(&tags, &strings(want), ours), None, "{what}");
            }
        }
    }

    #[test]
    fn drift_through_the_host() {
        let h = with_auto(host("node12", None, &[]), &["arch", "os", "gpu"], "nvidia");
        let have = strings(&["node12", "node", "shell", "x86_64", "rhel9", "bigmem"]);
        assert_eq!(
            h.repaired_tags("shell", &have),
            Some(strings(&[
                "node12", "node", "shell", "x86_64", "rhel9", "gpu", "nvidia", "bigmem"
            ]))
        );
        let cpu = with_auto(host("node12", None, &[]), &["arch", "os", "gpu"], "cpu");
        let have = strings(&[
            "node12", "node", "shell", "x86_64", "rhel8", "gpu", "nvidia", "bigmem",
        ]);
        assert_eq!(
            cpu.repaired_tags("shell", &have),
            Some(strings(&[
                "node12", "node", "shell", "x86_64", "rhel9", "bigmem"
            ]))
        );
        // without --auto-tags, such tags are an admin's
        let plain = host("node12", None, &[]);
        assert_eq!(plain.repaired_tags("shell", &have), None);
    }

    #[test]
    fn ownership_with_auto_tags() {
        let plain = host("node12", None, &[]);
        let auto = with_auto(host("node12", None, &[]), &["arch", "os", "gpu"], "nvidia");
        let cpu = with_auto(host("node12", None, &[]), &["arch", "os", "gpu"], "cpu");
        // (description, tags, its type for plain, for auto (nvidia), for cpu)
        type Case<'a> = (
            &'a str,
            &'a [&'a str],
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: &[Case] = &[
            // the original script's runner: the exact fixed set
            (
                "x",
                &["node12", "node", "shell"],
                Some("shell"),
                Some("shell"),
                Some("shell"),
            ),
            // made with auto tags, then renamed by hand
            (
                "x",
                &[
                    "node12", "node", "shell", "x86_64", "rhel9", "gpu", "nvidia",
                ],
                None,
                Some("shell"),
                Some("shell"),
            ),
            // made before an upgrade and renamed: yesterday's OS tag
            (
                "x",
                &["node12", "node", "shell", "rhel8"],
                None,
                Some("shell"),
                Some("shell"),
            ),
            // a hand-added tag: the set is not this host's ...
            (
                "x",
                &["node12", "node", "shell", "bigmem"],
                None,
                None,
                None,
            ),
            (
                "x",
                &["node12", "node", "shell", "x86_64", "bigmem"],
                None,
                None,
                None,
            ),
            // ... but description and both tags are
            (
                "node12-shell",
                &["node12", "shell", "x86_64", "gpu", "bigmem"],
                Some("shell"),
                Some("shell"),
                Some("shell"),
            ),
            // auto tags alone never make a runner this host's
            ("x", &["x86_64", "rhel9", "shell"], None, None, None),
            ("x", &["node12", "x86_64", "rhel9", "gpu"], None, None, None),
            // another host's runner stays another's
            (
                "node13-shell",
                &["node12", "node", "shell", "x86_64", "rhel9"],
                None,
                None,
                None,
            ),
            (
                "x",
                &["node13", "node", "shell", "x86_64"],
                None,
                None,
                None,
            ),
        ];
        for (desc, tags, p, a, c) in cases {
            let tags = strings(tags);
            for (h, want, which) in [(&plain, p, "plain"), (&auto, a, "auto"), (&cpu, c, "cpu")] {
                assert_eq!(
                    h.owned_type(desc, &tags).as_deref(),
                    *want,
                    "{which}: {desc} {tags:?}"
                );
                assert_eq!(
                    h.owns(desc, &tags, "shell"),
                    want.is_some(),
                    "{which}: {desc} {tags:?}"
                );
            }
        }
        // what this host registers now is its own, on and off
        for h in [&plain, &auto, &cpu] {
            for ty in ["shell", "batch"] {
                let tags = h.tags(ty);
                assert_eq!(h.owned_type("renamed", &tags).as_deref(), Some(ty));
                assert_eq!(h.owned_type(&h.description(ty), &tags).as_deref(), Some(ty));
            }
        }
    }
}
