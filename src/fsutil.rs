// SPDX-License-Identifier: MIT
//! The only place that writes files: atomic replacement (temporary file in
//! the same directory, `0600`, fsync, rename, fsync of the directory), the
//! metrics' `0644` one through real directories only ([`write_public`]),
//! and the per-prefix lock.

use crate::error::{Error, Kind, Result};
use crate::trust::{self, Class};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Removes the temporary file unless the write went through.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Does `path` already hold exactly `bytes`?
pub fn same_content(path: &Path, bytes: &[u8]) -> bool {
    trust::read(path, Class::Input).is_ok_and(|b| b.as_deref() == Some(bytes))
}

/// The directory of `path` (`.` for a bare name).
pub fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The temporary file [`write_atomic`] uses for `path` in process `pid`.
fn temp_path(path: &Path, pid: u32) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    dir_of(path).join(format!(".{name}.tmp-{pid}"))
}

/// Files an earlier run left behind beside `path` when it was killed: the
/// temporary files of [`write_atomic`] (`.NAME.tmp-PID`), stateless
/// mode's recovery files (`.NAME.issued-PID`) and probes
/// (`.gitlab-runner-auth.probe-PID`), of processes no longer running.
pub fn leftover_temps(path: &Path) -> Vec<PathBuf> {
    let Some(name) = path.file_name() else {
        return Vec::new();
    };
    let name = name.to_string_lossy();
    let stems = [
        format!(".{name}.tmp-"),
        format!(".{name}.issued-"),
        ".gitlab-runner-auth.probe-".to_string(),
    ];
    let Ok(entries) = std::fs::read_dir(dir_of(path)) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let file = e.file_name();
            let Some(n) = file.to_str() else { return false };
            stems.iter().any(|stem| {
                n.strip_prefix(stem.as_str()).is_some_and(|pid| {
                    !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()) && !alive(pid)
                })
            })
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// Prove that `dir` accepts a write of `bytes` bytes before GitLab issues a
/// token that would have to be written there: create, fill, fsync and
/// remove a probe file.
pub fn probe_writable(dir: &Path, bytes: usize) -> Result<()> {
    let probe = dir.join(format!(".gitlab-runner-auth.probe-{}", std::process::id()));
    let _ = std::fs::remove_file(&probe);
    let guard = TempGuard(Some(probe.clone()));
    let fail = |e: std::io::Error| {
        Error::write(dir, e).context("cannot persist a new token, so none was asked for")
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(trust::OPEN_FLAGS)
        .open(&probe)
        .map_err(fail)?;
    file.write_all(&vec![0u8; bytes]).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    drop(guard);
    Ok(())
}

/// Replace `path` with `bytes`, mode `0600`. A file that already exists keeps
/// its owner and group. Never leaves a truncated file behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_mode(path, bytes, 0o600)
}

/// [`write_atomic`] with another file mode, set on the whole temporary file
/// before the rename whatever the umask: `0644` for a file that others read
/// and that holds no secret (the metrics).
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = dir_of(path);
    if path.file_name().is_none() {
        return Err(Error::write(path, "not a file path"));
    }
    let tmp = temp_path(path, std::process::id());
    let _ = std::fs::remove_file(&tmp);
    let mut guard = TempGuard(Some(tmp.clone()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(trust::OPEN_FLAGS)
        .open(&tmp)
        .map_err(|e| Error::write(path, e))?;
    file.write_all(bytes).map_err(|e| Error::write(path, e))?;
    if let Ok(old) = std::fs::symlink_metadata(path) {
        let (uid, gid) = (old.uid(), old.gid());
        // Only a file of root's or the caller's passed the trust rules;
        // never hand a new file (and the tokens in it) to anyone else.
        if uid != 0 && uid != trust::effective_uid() {
            return Err(Error::write(
                path,
                format!("it is owned by uid {uid}, not by root or the caller"),
            ));
        }
        let new = file.metadata().map_err(|e| Error::write(path, e))?;
        if (uid, gid) != (new.uid(), new.gid()) {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
                .map_err(|e| Error::write(path, format!("cannot keep owner {uid}:{gid}: {e}")))?;
        }
    }
    if mode != 0o600 {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::write(path, e))?;
    }
    file.sync_all().map_err(|e| Error::write(path, e))?;
    drop(file);
    // The temporary file is whole and synced now: if the rename fails (a
    // bind-mounted or immutable target), it stays, so that the next run
    // recovers what it holds (a token GitLab issued, say).
    guard.0 = None;
    std::fs::rename(&tmp, path).map_err(|e| {
        Error::write(path, e).hint(format!(
            "its new content is kept in {} for the next run",
            tmp.display()
        ))
    })?;
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => {}
        Err(e) => log::warn!(
            "cannot sync {} after replacing {}: {e}; a power loss now could undo it",
            dir.display(),
            path.display()
        ),
    }
    Ok(())
}

/// Replace `path` with `bytes`, mode `0644`, for a file that others read
/// and that holds no secret (the metrics, read by node_exporter as
/// `prometheus`), in a directory that may belong to another user (Debian's
/// `/var/lib/prometheus` is `prometheus`'s).
///
/// Nothing can redirect the write: the directory is opened one component at
/// a time from `/` with `O_NOFOLLOW | O_DIRECTORY`, each next one relative
/// to the descriptor of the last (through `/proc/self/fd/N`, which the
/// kernel resolves to that open directory itself, whatever was renamed
/// since), and the temporary file is created and renamed in the last
/// directory's descriptor. A symlink on the way is refused, and so is a
/// directory writable by group or others without the sticky bit; a
/// directory's owner does not matter, since the file holds no secret. A
/// symlink or FIFO at `path` is replaced; a file of another user is not.
pub fn write_public(path: &Path, bytes: &[u8]) -> Result<()> {
    let Some(name) = path.file_name() else {
        return Err(Error::write(path, "not a file path"));
    };
    let abs = trust::absolute(path)?;
    let dir = open_dir_nofollow(path, dir_of(&abs))?;
    let at = |n: &std::ffi::OsStr| fd_path(&dir).join(n);
    // a file another user put there is theirs to remove: not replaced
    if let Ok(old) = std::fs::symlink_metadata(at(name))
        && old.is_file()
        && old.uid() != 0
        && old.uid() != trust::effective_uid()
    {
        return Err(Error::denied(format!(
            "refusing {}: it is owned by uid {}, not by root or the caller; fix it with: rm {0}",
            path.display(),
            old.uid()
        )));
    }
    let tmp_name = format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id());
    let tmp = at(tmp_name.as_ref());
    let _ = std::fs::remove_file(&tmp);
    let mut guard = TempGuard(Some(tmp.clone()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(trust::OPEN_FLAGS)
        .open(&tmp)
        .map_err(|e| Error::write(path, e))?;
    file.write_all(bytes).map_err(|e| Error::write(path, e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::write(path, e))?;
    }
    file.sync_all().map_err(|e| Error::write(path, e))?;
    drop(file);
    // rename(2) replaces the name itself, never what a symlink there
    // points to
    std::fs::rename(&tmp, at(name)).map_err(|e| Error::write(path, e))?;
    guard.0 = None;
    if let Err(e) = dir.sync_all() {
        log::warn!(
            "cannot sync {} after replacing {}: {e}; a power loss now could undo it",
            dir_of(&abs).display(),
            path.display()
        );
    }
    Ok(())
}

/// `/proc/self/fd/N` of the open `file`: the kernel resolves it to that
/// very file or directory (a "magic link"), not by its name.
fn fd_path(file: &File) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Open the directory `dir` (absolute) of `file` one component at a time
/// from `/`, each relative to the descriptor of the one before, never
/// following a symlink, and check each on its descriptor: a directory
/// writable by group or others without the sticky bit is refused.
fn open_dir_nofollow(file: &Path, dir: &Path) -> Result<File> {
    let open = |p: &Path| {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | trust::OPEN_FLAGS)
            .open(p)
    };
    let mut shown = PathBuf::from("/");
    let mut cur = open(&shown).map_err(|e| Error::write(file, format!("/: {e}")))?;
    check_public_dir(file, &shown, &cur)?;
    for c in dir.components() {
        let c = match c {
            std::path::Component::Normal(n) => n,
            std::path::Component::ParentDir => "..".as_ref(),
            _ => continue,
        };
        shown.push(c);
        let proc_fd = fd_path(&cur);
        let next = match open(&proc_fd.join(c)) {
            Ok(d) => d,
            // a symlink: ELOOP, or ENOTDIR as O_DIRECTORY is checked first
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                let link = std::fs::symlink_metadata(proc_fd.join(c))
                    .is_ok_and(|m| m.file_type().is_symlink());
                if !link {
                    return Err(Error::write(
                        file,
                        format!("{} is not a directory", shown.display()),
                    ));
                }
                let real = std::fs::canonicalize(&shown).map_or_else(
                    |_| format!("$(readlink -f {})", shown.display()),
                    |p| p.display().to_string(),
                );
                let name = file.file_name().unwrap_or_default().to_string_lossy();
                return Err(Error::denied(format!(
                    "refusing {}: it is a symbolic link, and {} is written only through real directories; fix it with: --metrics-file {real}/{name}",
                    shown.display(),
                    file.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !proc_fd.exists() => {
                return Err(Error::write(
                    file,
                    format!("{} is missing: is /proc mounted?", proc_fd.display()),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::write(
                    file,
                    format!("{} does not exist", shown.display()),
                ));
            }
            Err(e) => return Err(Error::write(file, format!("{}: {e}", shown.display()))),
        };
        check_public_dir(file, &shown, &next)?;
        cur = next;
    }
    Ok(cur)
}

/// The rule of [`open_dir_nofollow`] for the open directory `d` (at
/// `shown`): not writable by group or others unless sticky.
fn check_public_dir(file: &Path, shown: &Path, d: &File) -> Result<()> {
    let meta = d
        .metadata()
        .map_err(|e| Error::write(file, format!("{}: {e}", shown.display())))?;
    let m = meta.mode() & 0o7777;
    if m & 0o022 != 0 && m & 0o1000 == 0 {
        return Err(Error::denied(format!(
            "refusing {}: it is writable by group or others without the sticky bit (mode {m:04o}), so they could replace {}; fix it with: chmod go-w {0}",
            shown.display(),
            file.display()
        )));
    }
    Ok(())
}

/// Write `bytes` to `path` in place (`0600`, created if missing, synced):
/// a recovery file only, never a file gitlab-runner reads.
pub fn write_recovery(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(trust::OPEN_FLAGS)
        .open(path)
        .map_err(|e| Error::write(path, e))?;
    file.write_all(bytes).map_err(|e| Error::write(path, e))?;
    file.sync_all().map_err(|e| Error::write(path, e))
}

/// The recovery file stateless mode keeps beside `config` while a run
/// holds tokens GitLab issued that `config` does not hold yet.
pub fn issued_path(config: &Path) -> PathBuf {
    let name = config.file_name().unwrap_or_default().to_string_lossy();
    dir_of(config).join(format!(".{name}.issued-{}", std::process::id()))
}

/// Is `pid` a live process other than this one?
fn alive(pid: &str) -> bool {
    pid != std::process::id().to_string() && Path::new("/proc").join(pid).exists()
}

/// Make the file at `path` (checked by the trust rules) `0600`, through a
/// descriptor opened without following a symlink.
pub fn make_private(path: &Path) -> Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(trust::OPEN_FLAGS)
        .open(path)
        .map_err(|e| Error::write(path, e))?;
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::write(path, e))
}

/// Remove `path`; a file that is already gone is fine.
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::write(path, e)),
        _ => Ok(()),
    }
}

/// An exclusive lock on a file, held until dropped.
pub struct Lock {
    _file: File,
}

/// Take the lock at `path`, waiting up to `wait` for another run to finish.
pub fn lock(path: &Path, wait: Duration) -> Result<Lock> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(trust::OPEN_FLAGS)
        .open(path)
        .map_err(|e| {
            // ELOOP (a symlink), ENXIO (a FIFO nobody reads), ...
            trust::not_a_file(path, "rm")
                .unwrap_or_else(|| Error::write(path, e).context("failed to take the lock"))
        })?;
    let meta = file
        .metadata()
        .map_err(|e| Error::write(path, e).context("failed to take the lock"))?;
    trust::check_file(path, &meta, Class::Input)?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Lock { _file: file }),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                crate::signals::sleep(Duration::from_millis(100), "taking the lock")?;
            }
            Err(TryLockError::WouldBlock) => {
                return Err(Error::new(
                    Kind::LockBusy,
                    format!(
                        "another gitlab-runner-auth holds {} (waited {}s); try again when it has finished",
                        path.display(),
                        wait.as_secs()
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::write(path, e).context("failed to take the lock"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod_dir(d: &Path, mode: u32) {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gra-fs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_0600_and_replaces() {
        let d = scratch("w");
        let p = d.join("f");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert!(same_content(&p, b"new"));
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            1,
            "no temp file left"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn writes_another_mode_when_asked() {
        let d = scratch("m");
        let p = d.join("f.prom");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic_mode(&p, b"new", 0o644).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o644);
        write_atomic_mode(&d.join("g.prom"), b"x", 0o644).unwrap();
        assert_eq!(
            std::fs::metadata(d.join("g.prom")).unwrap().mode() & 0o777,
            0o644
        );
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            2,
            "no temp file left"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn public_files_are_0644_through_real_directories_only() {
        let d = scratch("p");
        chmod_dir(&d, 0o755);
        let sub = d.join("sub");
        std::fs::create_dir(&sub).unwrap();
        let p = sub.join("f.prom");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_public(&p, b"new\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new\n");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o644);
        assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 1, "no temp left");
        // `..` and a relative path are walked as they are
        write_public(&sub.join("../sub/g.prom"), b"g").unwrap();
        assert_eq!(std::fs::read(sub.join("g.prom")).unwrap(), b"g");

        // a symlink on the way: refused, naming it, nothing at its target
        let target = d.join("target");
        std::fs::create_dir(&target).unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = write_public(&link.join("f.prom"), b"x").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "refusing {}: it is a symbolic link, and {} is written only through real directories; fix it with: --metrics-file {}/f.prom",
                link.display(),
                link.join("f.prom").display(),
                std::fs::canonicalize(&target).unwrap().display()
            )
        );
        assert_eq!(e.kind(), Kind::Denied);
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);

        // a symlink as the file itself is replaced, not written through
        let victim = target.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let file_link = sub.join("h.prom");
        std::os::unix::fs::symlink(&victim, &file_link).unwrap();
        write_public(&file_link, b"h").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(std::fs::symlink_metadata(&file_link).unwrap().is_file());

        // writable by others: refused unless sticky
        chmod_dir(&sub, 0o777);
        let e = write_public(&p, b"x").unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "refusing {}: it is writable by group or others without the sticky bit (mode 0777)",
                sub.display()
            )) && e
                .to_string()
                .ends_with(&format!("fix it with: chmod go-w {}", sub.display())),
            "{e}"
        );
        chmod_dir(&sub, 0o1777);
        write_public(&p, b"sticky").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"sticky");
        chmod_dir(&sub, 0o755);

        // missing, or a file where a directory should be
        let e = write_public(&d.join("none/f.prom"), b"x").unwrap_err();
        assert_eq!(e.kind(), Kind::Write);
        assert!(e.to_string().ends_with(" does not exist"), "{e}");
        let e = write_public(&p.join("f.prom"), b"x").unwrap_err();
        assert!(e.to_string().ends_with(" is not a directory"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn leftovers_and_probes() {
        let d = scratch("t");
        let p = d.join("runner-data.json");
        for n in [
            ".runner-data.json.tmp-999999999",
            ".runner-data.json.issued-999999998",
            ".gitlab-runner-auth.probe-999999997",
            // pid 1 is alive: another run's file, not a leftover
            ".runner-data.json.tmp-1",
            ".runner-data.json.tmp-x",
            "runner-data.json",
            ".config.toml.tmp-3",
        ] {
            std::fs::write(d.join(n), "x").unwrap();
        }
        assert_eq!(
            leftover_temps(&p),
            vec![
                d.join(".gitlab-runner-auth.probe-999999997"),
                d.join(".runner-data.json.issued-999999998"),
                d.join(".runner-data.json.tmp-999999999"),
            ]
        );
        probe_writable(&d, 4096).unwrap();
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            7,
            "the probe is gone"
        );
        assert_eq!(
            probe_writable(&d.join("missing"), 1).unwrap_err().kind(),
            Kind::Write
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn second_lock_is_busy() {
        let d = scratch("l");
        let p = d.join("lock");
        let _held = lock(&p, Duration::ZERO).unwrap();
        let e = lock(&p, Duration::from_millis(200)).err().unwrap();
        assert_eq!(e.kind(), Kind::LockBusy);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
