// SPDX-License-Identifier: MIT
//! `setup`: install the hook on a node that has only the copied binary (the
//! air-gapped install). The drop-in, the settings file and the example
//! template are the package's own files, carried inside the binary, so the
//! two never disagree. `--uninstall` removes what it wrote.
//!
//! Every path is under `--sysroot` (default `/`) but the prefix; systemctl
//! is only called when the sysroot is `/`.

use crate::commands::Outcome;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::settings::Settings;
use crate::trust;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The packages' drop-in, settings file and example template.
pub const DROP_IN_TEXT: &str = include_str!("../../systemd/50-gitlab-runner-auth.conf");
pub const SETTINGS_TEXT: &str = include_str!("../../packaging/gitlab-runner-auth.env");
pub const TEMPLATE_TEXT: &str = include_str!("../../packaging/examples/config.template");

pub const DROP_IN: &str = "50-gitlab-runner-auth.conf";
/// Where setup puts the drop-in (an admin install), and where the packages
/// put it (a vendor install).
pub const ADMIN_DIR: &str = "etc/systemd/system/gitlab-runner.service.d";
pub const VENDOR_DIR: &str = "usr/lib/systemd/system/gitlab-runner.service.d";
const DEBIAN_SETTINGS: &str = "etc/default/gitlab-runner-auth";
const RHEL_SETTINGS: &str = "etc/sysconfig/gitlab-runner-auth";
/// The lines of the packaged files that setup fills in.
const PACKAGED_EXEC: &str = "ExecStartPre=/usr/bin/gitlab-runner-auth";
const PACKAGED_API_URL: &str = "#GITLAB_RUNNER_AUTH_API_URL=https://gitlab.example.com";
const PACKAGED_PREFIX: &str = "#GITLAB_RUNNER_AUTH_PREFIX=/etc/gitlab-runner";
const EXAMPLE_URL: &str = "https://gitlab.example.com";

/// A file setup writes (or would write).
struct Write {
    path: PathBuf,
    text: String,
    mode: u32,
}

/// The drop-in, its `ExecStartPre=` running `exe`.
pub fn drop_in_for(exe: &str) -> String {
    DROP_IN_TEXT.replace(PACKAGED_EXEC, &format!("ExecStartPre={exe}"))
}

/// A drop-in setup wrote and nobody edited since: the packaged one with
/// only the path `ExecStartPre=` runs set (what [`drop_in_for`] writes).
fn drop_in_unchanged(text: &str) -> bool {
    text.lines()
        .find_map(|l| l.strip_prefix("ExecStartPre="))
        .is_some_and(|exe| !exe.is_empty() && text == drop_in_for(exe))
}

/// The settings file, with the API URL and the prefix set when given.
pub fn settings_for(url: Option<&str>, prefix: Option<&str>) -> String {
    let mut text = SETTINGS_TEXT.to_string();
    if let Some(u) = url {
        text = text.replace(PACKAGED_API_URL, &format!("GITLAB_RUNNER_AUTH_API_URL={u}"));
    }
    if let Some(p) = prefix {
        text = text.replace(PACKAGED_PREFIX, &format!("GITLAB_RUNNER_AUTH_PREFIX={p}"));
    }
    text
}

/// A settings file setup wrote and nobody edited since: the packaged one,
/// with at most the API URL and the prefix lines set (what `setup
/// --api-url URL -p DIR` writes).
fn settings_unchanged(text: &str) -> bool {
    let set = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .filter(|v| !v.is_empty())
    };
    text == settings_for(
        set("GITLAB_RUNNER_AUTH_API_URL="),
        set("GITLAB_RUNNER_AUTH_PREFIX="),
    )
}

/// The prefix as the settings file sets it: absolute (the service runs in
/// `/`), and nothing systemd would interpret in an `EnvironmentFile=` line.
fn settings_prefix(prefix: &Path) -> Result<String> {
    let abs = std::path::absolute(prefix).map_err(|e| Error::read(prefix, e))?;
    match abs.to_str() {
        Some(text) if plain(text) => Ok(text.to_string()),
        _ => Err(Error::usage(format!(
            "invalid --prefix {}: setup writes it into the settings file, where whitespace, quotes, \\, ;, $ and % do not stand as they are; use a plain path such as /srv/gitlab-runner",
            crate::settings::escaped(&abs.to_string_lossy())
        ))),
    }
}

/// The settings file of this OS: `/etc/sysconfig` on RHEL-like systems
/// (ID or ID_LIKE of os-release), `/etc/default` elsewhere.
fn settings_path(sysroot: &Path) -> PathBuf {
    let text = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(sysroot.join(p)).ok())
        .unwrap_or_default();
    let mut words = Vec::new();
    for line in text.lines() {
        if let Some((k, v)) = line.trim().split_once('=')
            && matches!(k.trim(), "ID" | "ID_LIKE")
        {
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
            words.extend(v.split_whitespace().map(str::to_ascii_lowercase));
        }
    }
    let rhel = words.iter().any(|w| {
        matches!(
            w.as_str(),
            "rhel" | "fedora" | "centos" | "rocky" | "almalinux" | "suse" | "opensuse" | "sles"
        )
    });
    let debian = words
        .iter()
        .any(|w| matches!(w.as_str(), "debian" | "ubuntu"));
    sysroot.join(if rhel && !debian {
        RHEL_SETTINGS
    } else {
        DEBIAN_SETTINGS
    })
}

/// Whether `text` may be written into `ExecStartPre=` or an
/// `EnvironmentFile=` line as it is: nothing systemd would interpret there
/// (`%` specifiers, quotes, `\`, `;`, `$`), no whitespace or control
/// character that would split or end the line.
fn plain(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "%\"'\\;$".contains(c))
}

/// This binary's real path, checked as a program root may run at every
/// start of gitlab-runner ([`trust::check_program`]): the path the drop-in
/// names, and the path it was started by when one was given.
fn own_path() -> Result<String> {
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| Error::config(format!("cannot find this binary's own path: {e}")))?;
    let Some(text) = exe.to_str().map(String::from) else {
        return Err(Error::config(format!(
            "{} is not UTF-8: move the binary to a plain path such as /usr/local/sbin/gitlab-runner-auth",
            exe.display()
        )));
    };
    if !plain(&text) {
        return Err(Error::config(format!(
            "{text} has characters systemd would interpret in ExecStartPre=: move the binary to a plain path such as /usr/local/sbin/gitlab-runner-auth"
        )));
    }
    let fix = format!("install -m 0755 {text} /usr/local/sbin/ and run setup from there");
    let context = |e: Error| {
        e.context(format!(
            "{text} would run as root at every start of gitlab-runner"
        ))
    };
    trust::check_program(&exe, &fix).map_err(context)?;
    if let Some(given) = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .filter(|p| p.as_os_str().as_encoded_bytes().contains(&b'/'))
    {
        trust::check_program(&given, &fix).map_err(context)?;
    }
    Ok(text)
}

/// Create `dir` (and missing parents) with `mode` if missing, then check it
/// as a directory this tool writes in.
fn ensure_dir(dir: &Path, mode: u32) -> Result<()> {
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .map_err(|e| Error::write(dir, e))?;
        // whatever the umask
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::write(dir, e))?;
    }
    trust::check_dir(dir)
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

pub fn run(s: &Settings) -> Result<Outcome> {
    let root = &s.sysroot;
    let live = root == Path::new("/");
    let vendor = root.join(VENDOR_DIR).join(DROP_IN);
    let packaged = exists(&vendor).then_some(vendor.as_path());
    if live && !s.preview && trust::effective_uid() != 0 {
        return Err(Error::denied(
            "setup writes under /etc and reloads systemd: run it as root (or with --dry-run to see what it would write)",
        ));
    }
    let drop_in = root.join(ADMIN_DIR).join(DROP_IN);
    if s.uninstall {
        return uninstall(s, &drop_in, packaged);
    }
    if let Some(vendor) = packaged {
        return Err(Error::config(format!(
            "a package installed the drop-in already: {}; setup is for a node without the gitlab-runner-auth package (configure the package's /etc/default or /etc/sysconfig file instead, or remove the package first)",
            vendor.display()
        )));
    }
    let exe = own_path()?;
    let settings = settings_path(root);
    let template = s.prefix.join("config.template");
    let url = s.gitlab_url.as_deref();
    let mut writes = vec![Write {
        path: drop_in.clone(),
        text: drop_in_for(&exe),
        mode: 0o644,
    }];
    let mut kept = Vec::new();
    // the service runs with the default prefix unless the settings file says otherwise
    let custom_prefix = s.prefix != Path::new(crate::settings::DEFAULT_PREFIX);
    if exists(&settings) {
        // root reads it at every start, and it names the GitLab the admin
        // token goes to: it passes the trust rules, or setup stops
        trust::read(&settings, trust::Class::Input)?;
        if std::fs::metadata(&settings).is_ok_and(|m| m.permissions().mode() & 0o044 != 0) {
            log::warn!(
                "{} is readable by others: it may hold proxy credentials (HTTPS_PROXY=); fix it with: chmod 600 {}",
                settings.display(),
                settings.display()
            );
        }
        kept.push(settings.clone());
        if let Some(u) = url {
            log::warn!(
                "{} exists and is kept: --api-url {u} is not written into it; set GITLAB_RUNNER_AUTH_API_URL there yourself",
                settings.display()
            );
        }
        if custom_prefix {
            log::warn!(
                "{} exists and is kept: --prefix {} is not written into it; set GITLAB_RUNNER_AUTH_PREFIX there yourself",
                settings.display(),
                s.prefix.display()
            );
        }
    } else {
        let prefix = custom_prefix
            .then(|| settings_prefix(&s.prefix))
            .transpose()?;
        // private: it may hold proxy credentials (HTTPS_PROXY=)
        writes.push(Write {
            path: settings.clone(),
            text: settings_for(url, prefix.as_deref()),
            mode: 0o600,
        });
    }
    // runners registered by hand, which the example would replace at the next start
    let hand_registered = if exists(&template) || s.force {
        0
    } else {
        runners_in(&s.config_path)?
    };
    if exists(&template) {
        kept.push(template.clone());
    } else if hand_registered > 0 {
        log::warn!(
            "{} holds {hand_registered} runner(s) and there is no {}: no example template written (the service would register new runners from it and drop these from config.toml); adopt them with gitlab-runner-auth import (or write the example anyway with setup --force)",
            s.config_path.display(),
            template.display()
        );
    } else {
        let text = match url {
            Some(u) => TEMPLATE_TEXT.replace(EXAMPLE_URL, u),
            None => TEMPLATE_TEXT.to_string(),
        };
        writes.push(Write {
            path: template.clone(),
            text,
            mode: 0o600,
        });
    }
    let reload = live && root.join("run/systemd/system").is_dir();
    if s.preview {
        for w in &writes {
            println!(
                "# {} (setup would write it, mode {:04o})",
                w.path.display(),
                w.mode
            );
            print!("{}", w.text);
            println!();
        }
        for k in &kept {
            println!("# {} exists: setup would keep it", k.display());
        }
        if hand_registered > 0 {
            println!(
                "# {} is not written: {} holds {hand_registered} runner(s); run gitlab-runner-auth import",
                template.display(),
                s.config_path.display()
            );
        }
        if reload {
            println!("# setup would run systemctl daemon-reload");
        }
        crate::reconcile::summary(&format!(
            "setup --dry-run: {} file(s) would be written, nothing changed{}",
            writes.len(),
            import_next(hand_registered)
        ));
        return Ok(Outcome::Setup);
    }
    ensure_dir(fsutil::dir_of(&drop_in), 0o755)?;
    ensure_dir(fsutil::dir_of(&settings), 0o755)?;
    ensure_dir(&s.prefix, 0o700)?;
    for w in &writes {
        fsutil::write_atomic_mode(&w.path, w.text.as_bytes(), w.mode)?;
        log::info!("wrote {}", w.path.display());
    }
    for k in &kept {
        log::info!("kept {} (it exists)", k.display());
    }
    daemon_reload(s, reload);
    let mut steps = Vec::new();
    if url.is_none() {
        steps.push(format!(
            "{} GITLAB_RUNNER_AUTH_API_URL in {}",
            if kept.contains(&settings) {
                "check"
            } else {
                "set"
            },
            settings.display()
        ));
    }
    steps.push(format!(
        "put the registration or access token in {} (chmod 600)",
        s.prefix.join("admin-token").display()
    ));
    if hand_registered > 0 {
        steps.push(format!(
            "adopt the {hand_registered} runner(s) of {}: gitlab-runner-auth import (writes {} and runner-data.json from it; setup --force writes the example template instead)",
            s.config_path.display(),
            template.display()
        ));
    } else {
        steps.push(format!(
            "edit {} to the runners this host should have",
            template.display()
        ));
    }
    steps.push("check with gitlab-runner-auth doctor (or gitlab-runner-auth plan)".to_string());
    steps.push(
        "restart gitlab-runner when no job runs: systemctl restart gitlab-runner (setup never does)"
            .to_string(),
    );
    println!("setup: {exe} runs before gitlab-runner starts. Left to do:");
    for (i, step) in steps.iter().enumerate() {
        println!("  {}. {step}", i + 1);
    }
    crate::reconcile::summary(&format!(
        "setup: {} file(s) written, {} kept{}",
        writes.len(),
        kept.len(),
        import_next(hand_registered)
    ));
    Ok(Outcome::Setup)
}

/// How many `[[runners]]` the existing `config.toml` at `config` holds
/// (read under the trust rules; 0 when there is none).
fn runners_in(config: &Path) -> Result<usize> {
    match trust::read_text(config, trust::Class::Input)? {
        Some(text) => Ok(crate::state::config_runner_blocks(config, &text)?.len()),
        None => Ok(0),
    }
}

/// The end of the summary line when `config.toml` holds `n` runners
/// registered by hand.
fn import_next(n: usize) -> String {
    if n == 0 {
        return String::new();
    }
    format!(
        "; config.toml holds {n} runner(s) and no template was written: run gitlab-runner-auth import next"
    )
}

/// `--uninstall`: remove the drop-in and the settings file, each only when
/// it is what setup wrote. With the package installed (`packaged`, its
/// drop-in) the settings files are the package's and stay; an `/etc` copy
/// of the drop-in that setup wrote earlier goes, since it shadows the
/// package's.
fn uninstall(s: &Settings, drop_in: &Path, packaged: Option<&Path>) -> Result<Outcome> {
    let root = &s.sysroot;
    let live = root == Path::new("/");
    let mut remove = Vec::new();
    match std::fs::symlink_metadata(drop_in) {
        Ok(m) if m.is_file() && m.len() > 0 => match trust::read_text(drop_in, trust::Class::Input)
        {
            Ok(Some(text)) if drop_in_unchanged(&text) => remove.push(drop_in.to_path_buf()),
            Ok(_) => log::warn!(
                "{} is not the drop-in setup writes (edited, or written by hand): kept (remove it yourself if no longer wanted)",
                drop_in.display()
            ),
            Err(e) => log::warn!("{e}: kept"),
        },
        Ok(_) => log::warn!(
            "{} is not a file setup wrote (a link or an empty file, which disables the hook): kept",
            drop_in.display()
        ),
        Err(_) => log::info!("{} is not there", drop_in.display()),
    }
    for rel in [DEBIAN_SETTINGS, RHEL_SETTINGS] {
        let path = root.join(rel);
        if !exists(&path) {
            continue;
        }
        if let Some(vendor) = packaged {
            log::info!(
                "{} is kept: the package's drop-in {} reads it",
                path.display(),
                vendor.display()
            );
            continue;
        }
        match trust::read_text(&path, trust::Class::Input) {
            Ok(Some(text)) if settings_unchanged(&text) => remove.push(path),
            Ok(_) => log::warn!(
                "{} was edited since setup wrote it: kept (remove it yourself if no longer wanted)",
                path.display()
            ),
            Err(e) => log::warn!("{e}: kept"),
        }
    }
    let reload = live && root.join("run/systemd/system").is_dir();
    if s.preview {
        for p in &remove {
            println!("# {} (setup --uninstall would remove it)", p.display());
        }
        if reload {
            println!("# setup --uninstall would run systemctl daemon-reload");
        }
        return Ok(Outcome::Setup);
    }
    for p in &remove {
        fsutil::remove(p)?;
        log::info!("removed {}", p.display());
    }
    daemon_reload(s, reload);
    let next = match packaged {
        Some(vendor) => format!(
            "gitlab-runner runs the package's drop-in {} from its next start",
            vendor.display()
        ),
        None if remove.iter().any(|p| p == drop_in) => {
            "gitlab-runner runs without this tool from its next start".to_string()
        }
        None => format!("{} is kept", drop_in.display()),
    };
    crate::reconcile::summary(&format!(
        "setup --uninstall: {} file(s) removed; {} and the prefix are kept; {next}",
        remove.len(),
        s.prefix.join("config.template").display()
    ));
    Ok(Outcome::Setup)
}

/// `systemctl daemon-reload` when systemd runs this host; a failure is a
/// warning (the files are in place; the admin can reload).
fn daemon_reload(s: &Settings, reload: bool) {
    if !reload {
        if s.sysroot == Path::new("/") {
            log::info!("systemd is not running: no daemon-reload");
        } else {
            log::info!("--sysroot {}: not calling systemctl", s.sysroot.display());
        }
        return;
    }
    match std::process::Command::new("systemctl")
        .arg("daemon-reload")
        .status()
    {
        Ok(st) if st.success() => log::info!("systemctl daemon-reload: done"),
        Ok(st) => log::warn!("systemctl daemon-reload failed ({st}): run it yourself"),
        Err(e) => log::warn!("cannot run systemctl daemon-reload: {e}: run it yourself"),
    }
}
