// SPDX-License-Identifier: MIT
//! The job user: the account gitlab-runner runs shell and custom executor
//! jobs as (`User=` of its unit, else the `--user` of its `run`, else the
//! `gitlab-runner` account), and whether a job could read the admin's
//! token files in the prefix or change the template (or a directory above
//! it), and so choose where the next tokens go. `$CREDENTIALS_DIRECTORY`
//! is not checked here: systemd makes it the service user's.

use super::Report;
use super::install::Service;
use crate::error::Kind;
use crate::reconcile::inputs::JOB_USER;
use crate::settings::Settings;
use crate::trust::{self, Account};
use std::os::unix::fs::MetadataExt;

pub fn check(s: &Settings, service: &Service, r: &mut Report) {
    let (name, how) = service
        .job_user
        .clone()
        .unwrap_or_else(|| (JOB_USER.to_string(), "gitlab-runner's own account"));
    let passwd = s.sysroot.join("etc/passwd");
    let Some(job) = trust::account(&s.sysroot, &name) else {
        r.skip(
            "job user",
            format!("{name} ({how}) is not in {}", passwd.display()),
        );
        return;
    };
    if job.uid == 0 {
        r.skip(
            "job user",
            format!("{name} ({how}) is root: jobs can read everything on this host"),
        );
        return;
    }
    r.ok(
        "job user",
        format!(
            "shell and custom executor jobs run as {} (uid {}, {how})",
            job.name, job.uid
        ),
    );
    for file in ["admin-token", "access-token"] {
        tokens(s, &job, file, r);
    }
    template(s, &job, r);
}

/// A token file in the prefix the job user can read.
fn tokens(s: &Settings, job: &Account, file: &str, r: &mut Report) {
    let path = s.prefix.join(file);
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return;
    };
    if !job.can_read(&meta) {
        r.ok(
            file,
            format!("{}: {} cannot read it", path.display(), job.name),
        );
        return;
    }
    r.fail(
        file,
        Kind::Denied,
        format!(
            "{} is readable by {} (owner uid {}, mode {:04o}), the user gitlab-runner runs jobs as: every shell or custom executor job can read it",
            path.display(),
            job.name,
            meta.uid(),
            meta.mode() & 0o7777
        ),
        format!(
            "chown root: {0} && chmod 600 {0}, and run gitlab-runner as root with --user {1} (its default install, without USE_INIT_USER); or remove {0} once the runners exist (systemd's LoadCredential does not help: it gives its copy to the service's user, which the jobs are)",
            path.display(),
            job.name
        ),
    );
}

/// The template, or a directory above it, that the job user can change.
fn template(s: &Settings, job: &Account, r: &mut Report) {
    let path = &s.template_path;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let mut open = Vec::new();
    if job.can_write(&meta) {
        open.push(format!(
            "{} (owner uid {}, mode {:04o})",
            path.display(),
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    // a directory whose entries it can change: it can replace the file
    for dir in path
        .ancestors()
        .skip(1)
        .filter(|d| !d.as_os_str().is_empty())
    {
        if let Ok(m) = std::fs::metadata(dir) {
            let sticky = m.mode() & 0o1000 != 0 && m.uid() != job.uid;
            if job.can_write(&m) && !sticky {
                open.push(format!(
                    "{} (owner uid {}, mode {:04o})",
                    dir.display(),
                    m.uid(),
                    m.mode() & 0o7777
                ));
            }
        }
    }
    if open.is_empty() {
        r.ok(
            "template owner",
            format!("{} cannot change {}", job.name, path.display()),
        );
        return;
    }
    r.fail(
        "template owner",
        Kind::Denied,
        format!(
            "{} can change {}: a job could point the runners' url at its own server, and the next start sends the tokens there",
            job.name,
            open.join(", ")
        ),
        format!(
            "keep config.template root-owned in a root-owned directory: chown root: {0} && chmod 644 {0}, or move it (--template, {1}) to such a directory",
            path.display(),
            crate::cli::env_name("template")
        ),
    );
}
