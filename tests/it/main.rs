// SPDX-License-Identifier: MIT
//! The integration tests: one crate (test target `it`) that runs the real
//! binary against the fake GitLab in `tests/support/` (shared helpers live
//! there too), asserting exit codes, the requests GitLab saw, and the files
//! written. One module a concern; put a new test where a newcomer would
//! look for it:
//!
//! | module      | what goes there |
//! | ----------- | --------------- |
//! | `first_run` | a first run: creating runners, the template, the files written; the no-change run after it |
//! | `tokens`    | verify, rotation, healing, adoption, expiry; older GitLab versions |
//! | `faults`    | retries, junk and lost answers (creates and resets slower than `--timeout`, the pending-create record, ghosts), a full disk, a state that cannot be renamed over, leftovers, the lock, SIGTERM |
//! | `crash`     | the SIGKILL matrix at every request boundary, with and without `--stateless` |
//! | `logging`   | the log format: journald priorities, the terminal's short component |
//! | `load`      | the cluster reboot under each load profile (`make loadtest`: 50, 200 and 500 nodes, one table a profile) |
//! | `stateless` | `--stateless`: runners found in GitLab, no state file; a token issued before SIGTERM kept |
//! | `import`    | `import`: adopting a hand-registered config.toml, the template and state it writes, the run after it; odd config.toml files, no secret of it shown |
//! | `gitlabs`   | several GitLab instances in one config.toml: each block's url decides, `<prefix>/<authority>/` credentials, one GitLab down, a type moved, stateless and prune per GitLab |
//! | `gitlabs_isolation` | one GitLab's tokens never reach another and ids never mix: credentials taken away, types moved, leftovers, a SIGKILL at every request |
//! | `golden`    | golden files of `plan`, `plan --json`, the demo's `config.toml` and `doctor` (`GOLDEN=1` rewrites them) |
//! | `plan`      | what `plan` (`--dry-run`), `status` and `unregister` print and do |
//! | `trust`     | local trust (prefix and symlink chains to it, template, state, lock), token files, secrets never shown |
//! | `hostile`   | a compromised GitLab: injected tokens, ids out of range, escape sequences, endless listings, the run's deadline |
//! | `ownership` | a host touches only its own runners: prune, drift, copied prefixes (`unregister` too), a runner that lost its hostname tag, groups |
//! | `autotags`  | `--auto-tags`: tags from the host (fixture trees in `tests/fixtures/hosts/`), kept current by drift repair, hand-added tags kept |
//! | `cli`       | usage errors, `--help`, environment variables, options |
//! | `setup`     | `setup`: the air-gapped install from the binary alone (a scratch `--sysroot`), the binary's own path checked, `--dry-run`, `--uninstall`, the package's drop-in, a host with hand-registered runners |
//! | `metrics`   | `--metrics-file`: what `run` and `status` write, checked by a real parser; scraped from Debian's node_exporter; paths that could redirect the write (symlinks, FIFOs, another user's file, directories others can write) |
//! | `doctor`    | `doctor` (a line and a fix for each problem, read-only, no token shown or sent from an odd settings file or an untrusted prefix) and the first hour's messages (`glrt-` in admin-token, a wrong `--api-url`, a template typo) |
//! | `jobs`      | what CI jobs can reach: `doctor` fails and `run` warns when the job user can read the token files or change the template |
//! | `spec`      | the fake's checker against GitLab's OpenAPI spec (`tests/fixtures/`) |
//! | `profiles`  | every scenario against every GitLab version profile (13.12 … 19.x, GitLab.com; `tests/support/profiles.rs`), every token form; the README's version table |
//!
//! Run one module with `cargo test --test it trust::`, one test with
//! `cargo test --test it trust::a_template_another_user_can_write_is_refused`.

#[path = "../support/mod.rs"]
mod support;

mod autotags;
mod cli;
mod crash;
mod doctor;
mod faults;
mod first_run;
mod gitlabs;
mod gitlabs_isolation;
mod golden;
mod hostile;
mod import;
mod jobs;
mod load;
mod logging;
mod metrics;
mod ownership;
mod plan;
mod profiles;
mod setup;
mod spec;
mod stateless;
mod tokens;
mod trust;
