// SPDX-License-Identifier: MIT
//! The command line: pico-args into `Args`, with a `GITLAB_RUNNER_AUTH_*`
//! environment variable behind every option (flags win), and `--help`.

use crate::error::{Error, Result};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Command {
    #[default]
    Run,
    Plan,
    Status,
    Unregister,
    Import,
    Doctor,
    Setup,
}

/// The raw options, still as text; `settings` validates them.
#[derive(Debug, Default, PartialEq)]
pub struct Args {
    pub command: Command,
    pub api_url: Option<String>,
    pub prefix: Option<PathBuf>,
    pub stateless: bool,
    pub config: Option<PathBuf>,
    pub template: Option<PathBuf>,
    pub hostname: Option<String>,
    pub tags: Vec<String>,
    pub registration: Option<String>,
    pub runner_type: Option<String>,
    pub group_id: Option<String>,
    pub project_id: Option<String>,
    pub prune: bool,
    pub max_delete: Option<String>,
    pub dry_run: bool,
    pub offline_ok: bool,
    pub allow_http: bool,
    pub rotate_before: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Option<String>,
    pub wait: Option<String>,
    pub spread: Option<String>,
    pub verbose: u8,
    pub quiet: bool,
    pub json: bool,
    /// `import`: the runner type of each `[[runners]]`, in order.
    pub types: Vec<String>,
    /// `import`: overwrite an existing template and state.
    pub force: bool,
    /// `setup`: remove what setup wrote.
    pub uninstall: bool,
    pub metrics_file: Option<PathBuf>,
    pub auto_tags: Option<String>,
    pub warn_before: Option<String>,
    /// Where host facts are read (tests point it at fixture trees).
    pub sysroot: Option<PathBuf>,
    pub help: bool,
    pub version: bool,
}

pub const ENV_PREFIX: &str = "GITLAB_RUNNER_AUTH_";

pub const HELP: &str = "\
gitlab-runner-auth: make sure this host's GitLab runners exist, that their
tokens are valid, and that gitlab-runner's config.toml holds them.
Runs as ExecStartPre= of gitlab-runner.service.

USAGE:
  gitlab-runner-auth [run|plan|status|unregister|import|doctor|setup] [OPTIONS]

COMMANDS:
  run         reconcile runners and write config.toml (default)
  plan        show what run would do, change nothing (exit 2 if anything would)
  status      report each runner's token validity and expiry
  unregister  delete this host's runners from GitLab and clear local state
  import      adopt a hand-registered config.toml: write config.template and
              runner-data.json from it, re-registering nothing
  doctor      check the whole installation, read-only; one line per check
  setup       install the hook on a node that has only this binary: the
              drop-in (running this binary), the settings file and the
              example template; never restarts gitlab-runner

OPTIONS (each also read from the environment variable shown; flags win):
  --api-url URL           GitLab URL: https://host, https://host/ or
                          https://host/api/v4             [GITLAB_RUNNER_AUTH_API_URL]
  -p, --prefix DIR        directory of the token files, template and state
                          (default /etc/gitlab-runner)    [GITLAB_RUNNER_AUTH_PREFIX]
  --stateless             keep no runner-data.json; GitLab is the source of
                          truth (needs access-token)      [GITLAB_RUNNER_AUTH_STATELESS]
  --config FILE           config.toml to write (default PREFIX/config.toml)
                                                          [GITLAB_RUNNER_AUTH_CONFIG]
  --template FILE         template (default PREFIX/config.template)
                                                          [GITLAB_RUNNER_AUTH_TEMPLATE]
  --hostname NAME         this host's name (default: the kernel's)
                                                          [GITLAB_RUNNER_AUTH_HOSTNAME]
  --tag TAG               extra tag for created runners; repeatable
                          (environment: comma-separated)  [GITLAB_RUNNER_AUTH_TAGS]
  --registration MODE     auto|legacy|user-runners: how admin-token creates
                          runners (default auto: by token prefix)
                                                          [GITLAB_RUNNER_AUTH_REGISTRATION]
  --runner-type TYPE      instance_type|group_type|project_type
                          (default instance_type)         [GITLAB_RUNNER_AUTH_RUNNER_TYPE]
  --group-id ID           group of group_type runners     [GITLAB_RUNNER_AUTH_GROUP_ID]
  --project-id ID         project of project_type runners [GITLAB_RUNNER_AUTH_PROJECT_ID]
  --prune                 delete this host's runners of types no longer
                          configured                      [GITLAB_RUNNER_AUTH_PRUNE]
  --max-delete N          never delete more than N runners in one run
                          (default 3)                     [GITLAB_RUNNER_AUTH_MAX_DELETE]
  --dry-run               same as the plan command        [GITLAB_RUNNER_AUTH_DRY_RUN]
  --offline-ok            GitLab unreachable and config.toml present: keep
                          it, warn, exit 0                [GITLAB_RUNNER_AUTH_OFFLINE_OK]
  --allow-http            allow plain http:// (tokens unencrypted) to a
                          host that is not loopback       [GITLAB_RUNNER_AUTH_ALLOW_HTTP]
  --rotate-before DUR     also rotate tokens expiring within DUR (default 0)
                                                          [GITLAB_RUNNER_AUTH_ROTATE_BEFORE]
  --ca-file FILE          extra CA certificates (PEM) to trust
                                                          [GITLAB_RUNNER_AUTH_CA_FILE]
  --timeout DUR           per-request timeout (default 20s)
                                                          [GITLAB_RUNNER_AUTH_TIMEOUT]
  --wait DUR              total time for retries, and for the lock
                          (default 60s)                   [GITLAB_RUNNER_AUTH_WAIT]
  --spread DUR            run: wait a random time up to DUR before the
                          first request to GitLab, so that a cluster
                          starting at once does not meet GitLab at once
                          (default 0; README: Fleets)     [GITLAB_RUNNER_AUTH_SPREAD]
  --json                  plan, status, doctor: print JSON
                                                          [GITLAB_RUNNER_AUTH_JSON]
  --type NAME             import: the runner type of each [[runners]], in
                          order; repeatable               [GITLAB_RUNNER_AUTH_TYPES]
  --force                 import: overwrite an existing template and state,
                          and import a runner GitLab shows as not this
                          host's runner of its type;
                          setup: write the example template even where
                          config.toml holds runners       [GITLAB_RUNNER_AUTH_FORCE]
  --uninstall             setup: remove the drop-in and the settings file
                          setup wrote, unless edited      [GITLAB_RUNNER_AUTH_UNINSTALL]
  --metrics-file FILE     write Prometheus metrics there after run and status
                          (node_exporter's textfile collector)
                                                          [GITLAB_RUNNER_AUTH_METRICS_FILE]
  --auto-tags LIST        also tag runners from the host: arch, os, gpu,
                          env:NAME (comma-separated)      [GITLAB_RUNNER_AUTH_AUTO_TAGS]
  --warn-before DUR       warn when an access token expires within DUR
                          (default 30d)                   [GITLAB_RUNNER_AUTH_WARN_BEFORE]
  -v, --verbose           log each request (-vv: also the HTTP
                          client's debug lines)           [GITLAB_RUNNER_AUTH_VERBOSE]
  -q, --quiet             only warnings, errors and the summary line
                                                          [GITLAB_RUNNER_AUTH_QUIET]
  -h, --help              this text
  -V, --version           version and build target

Durations: 30s, 5m, 2h, 7d. Booleans in the environment: 1/0, true/false, yes/no.
Without an API URL the tool logs a notice and exits 0, touching nothing.

FILES (in PREFIX; token files are looked up in $CREDENTIALS_DIRECTORY first):
  admin-token       registration token, or access token with create_runner scope
  access-token      access token with api scope (optional; heals, deletes, lists)
  config.template   config.toml template, Python str.format named fields
  runner-data.json  state: runner type -> id, token, expiry
  .gitlab-runner-auth.lock

EXIT STATUS:
";

/// The environment variable of an option (`api-url` → `GITLAB_RUNNER_AUTH_API_URL`).
pub fn env_name(option: &str) -> String {
    format!("{ENV_PREFIX}{}", option.replace('-', "_").to_uppercase())
}

fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::usage(format!(
            "invalid value '{}' for {name}: expected true or false",
            crate::settings::shown(value)
        ))),
    }
}

/// `--tag=T` as `--tag T` (one pair of matching quotes dropped, as pico-args
/// does), so tags keep their command-line order: pico-args finds every
/// `--tag T` before any `--tag=T`.
fn split_tag_eq(argv: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(argv.len());
    for arg in argv {
        let split = arg.to_str().and_then(|a| {
            ["--tag", "--type"].iter().find_map(|key| {
                let v = a.strip_prefix(key)?.strip_prefix('=')?;
                let v = match v.as_bytes() {
                    [q @ (b'"' | b'\''), .., last] if q == last => &v[1..v.len() - 1],
                    _ => v,
                };
                Some((*key, v))
            })
        });
        match split {
            Some((key, v)) if !v.is_empty() => {
                out.push(OsString::from(key));
                out.push(OsString::from(v));
            }
            _ => out.push(arg),
        }
    }
    out
}

/// Parse `argv` (without the program name); `env` looks up variables.
pub fn parse(argv: Vec<OsString>, env: &dyn Fn(&str) -> Option<String>) -> Result<Args> {
    let mut p = pico_args::Arguments::from_vec(split_tag_eq(argv));
    let usage = |e: pico_args::Error| Error::usage(format!("{e}; see --help"));
    // A single-value option: `--key value` or `--key=value`, at most once.
    let text = |p: &mut pico_args::Arguments, keys: &[&'static str]| -> Result<Option<String>> {
        let long = keys[keys.len() - 1];
        let mut take = || match keys {
            [s, l] => p.opt_value_from_str::<_, String>([*s, *l]),
            _ => p.opt_value_from_str::<_, String>(long),
        };
        let flag = take().map_err(usage)?;
        // pico-args takes the first occurrence; anything left is a repeat
        if flag.is_some() && !matches!(take(), Ok(None)) {
            return Err(Error::usage(format!("{long} given twice")));
        }
        Ok(flag.or_else(|| env(&env_name(&long[2..])).filter(|v| !v.is_empty())))
    };
    let flag = |p: &mut pico_args::Arguments, keys: &[&'static str]| -> Result<bool> {
        let long = keys[keys.len() - 1];
        let set = match keys {
            [s, l] => p.contains([*s, *l]),
            _ => p.contains(long),
        };
        if set {
            return Ok(true);
        }
        let name = env_name(&long[2..]);
        env(&name).map_or(Ok(false), |v| parse_bool(&name, &v))
    };
    let mut args = Args {
        help: p.contains(["-h", "--help"]),
        version: p.contains(["-V", "--version"]),
        ..Args::default()
    };
    args.api_url = text(&mut p, &["--api-url"])?;
    args.prefix = text(&mut p, &["-p", "--prefix"])?.map(PathBuf::from);
    args.stateless = flag(&mut p, &["--stateless"])?;
    args.config = text(&mut p, &["--config"])?.map(PathBuf::from);
    args.template = text(&mut p, &["--template"])?.map(PathBuf::from);
    args.hostname = text(&mut p, &["--hostname"])?;
    args.tags = p.values_from_str::<_, String>("--tag").map_err(usage)?;
    if args.tags.is_empty()
        && let Some(v) = env(&env_name("tags"))
    {
        args.tags = v
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect();
    }
    args.registration = text(&mut p, &["--registration"])?;
    args.runner_type = text(&mut p, &["--runner-type"])?;
    args.group_id = text(&mut p, &["--group-id"])?;
    args.project_id = text(&mut p, &["--project-id"])?;
    args.prune = flag(&mut p, &["--prune"])?;
    args.max_delete = text(&mut p, &["--max-delete"])?;
    args.dry_run = flag(&mut p, &["--dry-run"])?;
    args.offline_ok = flag(&mut p, &["--offline-ok"])?;
    args.allow_http = flag(&mut p, &["--allow-http"])?;
    args.rotate_before = text(&mut p, &["--rotate-before"])?;
    args.ca_file = text(&mut p, &["--ca-file"])?.map(PathBuf::from);
    args.timeout = text(&mut p, &["--timeout"])?;
    args.wait = text(&mut p, &["--wait"])?;
    args.spread = text(&mut p, &["--spread"])?;
    args.json = flag(&mut p, &["--json"])?;
    args.types = p.values_from_str::<_, String>("--type").map_err(usage)?;
    if args.types.is_empty()
        && let Some(v) = env(&env_name("types"))
    {
        args.types = v
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect();
    }
    args.force = flag(&mut p, &["--force"])?;
    args.uninstall = flag(&mut p, &["--uninstall"])?;
    args.metrics_file = text(&mut p, &["--metrics-file"])?.map(PathBuf::from);
    args.auto_tags = text(&mut p, &["--auto-tags"])?;
    args.warn_before = text(&mut p, &["--warn-before"])?;
    args.sysroot = text(&mut p, &["--sysroot"])?.map(PathBuf::from);
    args.quiet = flag(&mut p, &["-q", "--quiet"])?;
    while p.contains("-vv") {
        args.verbose += 2;
    }
    while p.contains(["-v", "--verbose"]) {
        args.verbose += 1;
    }
    if args.verbose == 0
        && let Some(v) = env(&env_name("verbose"))
    {
        args.verbose = match v.trim().parse::<u8>() {
            Ok(n) => n,
            Err(_) => u8::from(parse_bool(&env_name("verbose"), &v)?),
        };
    }
    let mut rest = p
        .finish()
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned());
    if let Some(first) = rest.next() {
        args.command = match first.as_str() {
            "run" => Command::Run,
            "plan" => Command::Plan,
            "status" => Command::Status,
            "unregister" => Command::Unregister,
            "import" => Command::Import,
            "doctor" => Command::Doctor,
            "setup" => Command::Setup,
            other if other.starts_with('-') => {
                return Err(Error::usage(format!(
                    "unexpected argument '{other}'; see --help"
                )));
            }
            other => {
                return Err(Error::usage(format!(
                    "unknown command '{other}'; expected run, plan, status, unregister, import, doctor or setup"
                )));
            }
        };
    }
    if args.uninstall && args.command != Command::Setup {
        return Err(Error::usage(
            "--uninstall is an option of setup; see --help",
        ));
    }
    if let Some(extra) = rest.next() {
        return Err(Error::usage(format!(
            "unexpected argument '{extra}'; see --help"
        )));
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(argv: &[&str], env: &[(&str, &str)]) -> Result<Args> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(argv.iter().map(OsString::from).collect(), &|k| {
            env.get(k).cloned()
        })
    }

    #[test]
    fn flags_and_env() {
        let a = run(
            &[
                "--api-url",
                "https://g",
                "-p",
                "/x",
                "plan",
                "--tag",
                "a",
                "--tag",
                "b",
                "-vv",
                "--dry-run",
            ],
            &[
                ("GITLAB_RUNNER_AUTH_API_URL", "https://env"),
                ("GITLAB_RUNNER_AUTH_HOSTNAME", "h1"),
            ],
        )
        .unwrap();
        assert_eq!(a.command, Command::Plan);
        assert_eq!(a.api_url.as_deref(), Some("https://g"), "flag wins");
        assert_eq!(a.hostname.as_deref(), Some("h1"), "env fills in");
        assert_eq!(a.prefix, Some(PathBuf::from("/x")));
        assert_eq!(a.tags, vec!["a", "b"]);
        assert_eq!(a.verbose, 2);
        assert!(a.dry_run);
    }

    #[test]
    fn env_lists_and_bools() {
        let a = run(
            &[],
            &[
                ("GITLAB_RUNNER_AUTH_TAGS", "x, y,,z"),
                ("GITLAB_RUNNER_AUTH_STATELESS", "yes"),
                ("GITLAB_RUNNER_AUTH_OFFLINE_OK", "0"),
                ("GITLAB_RUNNER_AUTH_VERBOSE", "1"),
            ],
        )
        .unwrap();
        assert_eq!(a.command, Command::Run);
        assert_eq!(a.tags, vec!["x", "y", "z"]);
        assert!(a.stateless);
        assert!(!a.offline_ok);
        assert_eq!(a.verbose, 1);
    }

    #[test]
    fn usage_errors() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case; 4] = [
            (&["frobnicate"], &[], "unknown command 'frobnicate'"),
            (&["--bogus"], &[], "unexpected argument '--bogus'"),
            (&["--api-url"], &[], "--api-url"),
            (
                &[],
                &[("GITLAB_RUNNER_AUTH_PRUNE", "maybe")],
                "GITLAB_RUNNER_AUTH_PRUNE",
            ),
        ];
        for (argv, env, want) in cases {
            let e = run(argv, env).unwrap_err();
            assert_eq!(e.exit_code(), 64);
            assert!(e.to_string().contains(want), "{e}");
        }
    }

    #[test]
    fn a_single_value_option_given_twice() {
        let options = [
            "--api-url",
            "--prefix",
            "--config",
            "--template",
            "--hostname",
            "--registration",
            "--runner-type",
            "--group-id",
            "--project-id",
            "--max-delete",
            "--rotate-before",
            "--ca-file",
            "--timeout",
            "--wait",
            "--spread",
        ];
        for opt in options {
            let eq = format!("{opt}=b");
            for argv in [
                vec![opt, "a", opt, "b"],
                vec![opt, "a", "plan", &eq],
                vec![&eq, opt, "a"],
            ] {
                let e = run(&argv, &[]).unwrap_err();
                assert_eq!(e.exit_code(), 64, "{argv:?}");
                assert_eq!(e.to_string(), format!("{opt} given twice"), "{argv:?}");
            }
        }
        for argv in [
            ["-p", "/a", "--prefix", "/b"],
            ["--prefix", "/a", "-p", "/b"],
        ] {
            let e = run(&argv, &[]).unwrap_err();
            assert_eq!(e.to_string(), "--prefix given twice", "{argv:?}");
        }
        let e = run(&["--hostname", "a", "--hostname"], &[]).unwrap_err();
        assert_eq!(e.to_string(), "--hostname given twice");
        // once on the command line and once in the environment: the flag wins
        let a = run(
            &["--hostname", "a"],
            &[("GITLAB_RUNNER_AUTH_HOSTNAME", "b")],
        )
        .unwrap();
        assert_eq!(a.hostname.as_deref(), Some("a"));
    }

    #[test]
    fn key_equals_value_forms() {
        let a = run(
            &[
                "--hostname=h1",
                "-p=/x",
                "--wait=5s",
                "--tag=a",
                "--tag",
                "b",
                "--tag='c'",
                "status",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(a.hostname.as_deref(), Some("h1"));
        assert_eq!(a.prefix, Some(PathBuf::from("/x")));
        assert_eq!(a.wait.as_deref(), Some("5s"));
        assert_eq!(a.tags, vec!["a", "b", "c"], "in command-line order");
        assert_eq!(a.command, Command::Status);
        for argv in [["--hostname="], ["--tag="], ["--tag=''"]] {
            assert_eq!(run(&argv, &[]).unwrap_err().exit_code(), 64, "{argv:?}");
        }
    }

    #[test]
    fn help_lists_every_env_variable() {
        for opt in [
            "api-url",
            "prefix",
            "stateless",
            "config",
            "template",
            "hostname",
            "tags",
            "registration",
            "runner-type",
            "group-id",
            "project-id",
            "prune",
            "max-delete",
            "dry-run",
            "offline-ok",
            "allow-http",
            "rotate-before",
            "ca-file",
            "timeout",
            "wait",
            "spread",
            "verbose",
            "quiet",
            "types",
            "force",
            "metrics-file",
            "auto-tags",
            "warn-before",
        ] {
            assert!(HELP.contains(&env_name(opt)), "{opt}");
        }
    }
}
