// SPDX-License-Identifier: MIT
//! What CI jobs can reach: the user gitlab-runner runs shell and custom
//! executor jobs as must not read the admin's token files nor change the
//! template. `doctor` fails on it; `run` warns once. uid 65534 plays the
//! job user (and, for a `USE_INIT_USER` install, the service's user).

use crate::doctor::{VENDOR_DROP_IN, exec, fake_systemd, healthy, passwd, settings_file};
use crate::support::*;
use std::process::Command;

const NOBODY: u32 = 65534;

/// The binary run as uid/gid 65534, as a `USE_INIT_USER` unit runs its
/// pre-start, with `args`.
fn as_job_user(p: &Prefix, gl: &FakeGitlab, args: &[&str]) -> Run {
    let mut c = Command::new("/usr/bin/setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin())
        .env_clear()
        .env("PATH", p.path("bin"))
        .args(["--api-url", &gl.url(), "--prefix"])
        .arg(&p.dir)
        .args(["--hostname", HOST, "--timeout", "5s", "--wait", "5s"])
        .args(args);
    run_cmd(c)
}

/// What `cat file` run as uid 65534 (a job) prints, or `None` when it
/// cannot read it.
fn job_reads(file: &std::path::Path) -> Option<String> {
    let out = Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(file)
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `USE_INIT_USER` layout the README used to show: the prefix and
/// every file in it given to the service's user, which runs the jobs.
fn use_init_user_layout(gl: &FakeGitlab) -> Prefix {
    let p = healthy(gl);
    passwd(&p, NOBODY);
    std::fs::create_dir_all(p.path("root/etc")).unwrap();
    let mut show = crate::doctor::unit(
        Some(&exec("/usr/bin/gitlab-runner-auth", false)),
        VENDOR_DROP_IN,
        &path_str(&p.path("config.toml")),
    );
    // USE_INIT_USER: User= and no --user
    show.retain(|l| !l.starts_with("User=") && !l.starts_with("ExecStart="));
    show.push("User=gitlab-runner".into());
    show.push(format!(
        "ExecStart={}",
        exec(
            &format!(
                "/usr/bin/gitlab-runner run --config {} --working-directory /home/gitlab-runner --service gitlab-runner",
                path_str(&p.path("config.toml"))
            ),
            false
        )
    ));
    fake_systemd(&p, &show);
    settings_file(
        &p,
        &format!(
            "GITLAB_RUNNER_AUTH_API_URL={}\nGITLAB_RUNNER_AUTH_PREFIX={}\nGITLAB_RUNNER_AUTH_HOSTNAME={HOST}\n",
            gl.url(),
            path_str(&p.dir)
        ),
    );
    let st = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&p.dir)
        .status()
        .unwrap();
    assert!(st.success());
    p
}

#[test]
fn doctor_fails_when_the_job_user_can_read_the_token_files_or_change_the_template() {
    root_only!();
    let gl = FakeGitlab::start(World::default());
    let p = use_init_user_layout(&gl);
    // a job of the shell executor runs as that user: it reads the admin's token
    assert_eq!(
        job_reads(&p.path("access-token")).as_deref(),
        Some(ADMIN_PAT)
    );
    let root = path_str(&p.path("root"));
    let r = as_job_user(&p, &gl, &["doctor", "--sysroot", &root]);
    assert_code(&r, 77);
    let dir = path_str(&p.dir);
    assert!(
        r.stdout.contains(&format!(
            "\njobs\n  ok    job user          shell and custom executor jobs run as gitlab-runner (uid 65534, User= of gitlab-runner.service)\n  fail  admin-token       {dir}/admin-token is readable by gitlab-runner (owner uid 65534, mode 0600), the user gitlab-runner runs jobs as: every shell or custom executor job can read it\n        fix: chown root: {dir}/admin-token && chmod 600 {dir}/admin-token, and run gitlab-runner as root with --user gitlab-runner (its default install, without USE_INIT_USER); or remove {dir}/admin-token once the runners exist (systemd's LoadCredential does not help: it gives its copy to the service's user, which the jobs are)\n  fail  access-token      {dir}/access-token is readable by gitlab-runner (owner uid 65534, mode 0600)"
        )),
        "{r:?}"
    );
    assert!(
        r.stdout.contains(&format!(
            "  fail  template owner    gitlab-runner can change {dir}/config.template (owner uid 65534, mode 0600), {dir} (owner uid 65534, mode 0700): a job could point the runners' url at its own server, and the next start sends the tokens there\n        fix: keep config.template root-owned in a root-owned directory: chown root: {dir}/config.template && chmod 644 {dir}/config.template, or move it (--template, GITLAB_RUNNER_AUTH_TEMPLATE) to such a directory\n"
        )),
        "{r:?}"
    );
    assert_no_secrets(&r, &gl);
}

#[test]
fn doctor_finds_the_job_user_in_the_stock_units_user_argument() {
    root_only!();
    let gl = FakeGitlab::start(World::default());
    // the stock unit: root, `--user gitlab-runner`; the files root's
    let p = healthy(&gl);
    passwd(&p, NOBODY);
    assert_eq!(job_reads(&p.path("access-token")), None);
    let r = crate::doctor::doctor(&p, &gl, &[]);
    assert_code(&r, 0);
    let dir = path_str(&p.dir);
    assert!(
        r.stdout.contains(&format!(
            "\njobs\n  ok    job user          shell and custom executor jobs run as gitlab-runner (uid 65534, --user in its ExecStart)\n  ok    admin-token       {dir}/admin-token: gitlab-runner cannot read it\n  ok    access-token      {dir}/access-token: gitlab-runner cannot read it\n  ok    template owner    gitlab-runner cannot change {dir}/config.template\n"
        )),
        "{r:?}"
    );
    // a token file its group may read, the group being the job user's (and
    // a prefix others may pass through)
    chmod(&p.dir, 0o711);
    let st = Command::new("chown")
        .arg(format!("root:{NOBODY}"))
        .arg(p.path("access-token"))
        .status()
        .unwrap();
    assert!(st.success());
    chmod(&p.path("access-token"), 0o640);
    assert_eq!(
        job_reads(&p.path("access-token")).as_deref(),
        Some(ADMIN_PAT)
    );
    let r = crate::doctor::doctor(&p, &gl, &[]);
    assert_code(&r, 77);
    assert!(
        r.stdout.contains(&format!(
            "  fail  access-token      {dir}/access-token is readable by gitlab-runner (owner uid 0, mode 0640)"
        )),
        "{r:?}"
    );
}

#[test]
fn a_run_whose_token_files_its_own_non_root_user_owns_warns_once() {
    root_only!();
    let gl = FakeGitlab::start(World::default());
    let p = use_init_user_layout(&gl);
    let r = as_job_user(&p, &gl, &[]);
    assert_code(&r, 0);
    let dir = path_str(&p.dir);
    let want = format!(
        "{dir}/admin-token and {dir}/access-token and {dir}/config.template: owned by nobody (uid 65534), not root: when gitlab-runner runs jobs as nobody (a USE_INIT_USER install with the shell or custom executor), every job can read the tokens and rewrite the template; gitlab-runner-auth doctor checks it (README: gitlab-runner running as its own user)"
    );
    assert_eq!(r.stderr.matches(&want).count(), 1, "{r:?}");
    assert_eq!(r.stderr.matches("not root: when").count(), 1, "{r:?}");
}
