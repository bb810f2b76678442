// SPDX-License-Identifier: MIT
//! Local trust, after OpenSSH's `StrictModes`: what this tool reads decides
//! where gitlab-runner sends its tokens, so every directory and file it
//! reads must be out of reach of other local users. Files are opened with
//! `O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`, checked with `fstat` on the open
//! descriptor (no check-then-open race) and read up to a cap.

use crate::error::{Error, Kind, Result};
use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// The most this tool reads of any input file.
pub const READ_CAP: u64 = 1024 * 1024;

/// Flags of every open: never follow a symlink in the last component, never
/// block on a FIFO or a device, never leak the descriptor to a child.
pub const OPEN_FLAGS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

/// What a file holds, which decides how private it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Read by the tool; others must not be able to change it.
    Input,
    /// A token: others must not be able to read it either.
    Secret,
}

/// The effective uid of this process, read without `unsafe`: `/proc/self`
/// is owned by it.
pub fn effective_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

/// The name of `uid` in `/etc/passwd` (`root` for 0).
pub fn user_name(uid: u32) -> Option<String> {
    if uid == 0 {
        return Some("root".into());
    }
    account(Path::new("/"), &uid.to_string()).map(|a| a.name)
}

/// An account of `<root>/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl Account {
    /// Can this account read a file or directory with `meta`: it owns it
    /// (and so can `chmod` it), or its group or others may read it.
    pub fn can_read(&self, meta: &Metadata) -> bool {
        self.may(meta, 0o4)
    }

    /// Can this account change a file (or a directory's entries) with `meta`,
    /// on the same terms.
    pub fn can_write(&self, meta: &Metadata) -> bool {
        self.may(meta, 0o2)
    }

    fn may(&self, meta: &Metadata, bit: u32) -> bool {
        let m = meta.mode();
        meta.uid() == self.uid || (meta.gid() == self.gid && m & (bit << 3) != 0) || m & bit != 0
    }
}

/// The account `user` (a name, or a uid) in `<root>/etc/passwd`.
pub fn account(root: &Path, user: &str) -> Option<Account> {
    let text = std::fs::read_to_string(root.join("etc/passwd")).ok()?;
    let uid = user.parse::<u32>().ok();
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let a = Account {
            name: f.first()?.to_string(),
            uid: f.get(2)?.parse().ok()?,
            gid: f.get(3)?.parse().ok()?,
        };
        (a.name == user || Some(a.uid) == uid).then_some(a)
    })
}

fn denied(path: &Path, why: String, fix: String) -> Error {
    Error::denied(format!(
        "refusing {}: {why}; fix it with: {fix}",
        path.display()
    ))
}

/// What a walk from `/` (see [`walk`]) accepts on the way.
#[derive(Debug, Clone, Copy)]
enum Rule<'a> {
    /// Data this tool reads or writes: a directory on the way may be
    /// writable by others when it is sticky (`/tmp`): they cannot rename
    /// what we own there.
    Data,
    /// A program root runs at every start of a service: no directory on the
    /// way may be writable by others, sticky or not (a tmp cleaner empties
    /// `/tmp`, and then anyone may put their own program at that path). The
    /// walk may end at the file, and every refusal names the one `fix`.
    Program { fix: &'a str },
}

impl Rule<'_> {
    /// The fix a refusal names: the rule's own, else `default`.
    fn fix(self, default: String) -> String {
        match self {
            Rule::Data => default,
            Rule::Program { fix } => fix.to_string(),
        }
    }
}

/// The owner rule: root or the caller.
fn check_owner(path: &Path, meta: &Metadata, euid: u32, rule: Rule) -> Result<()> {
    if meta.uid() == 0 || meta.uid() == euid {
        return Ok(());
    }
    Err(denied(
        path,
        format!(
            "it is owned by {}uid {}, not by root or the caller",
            user_name(meta.uid()).map_or(String::new(), |n| format!("{n} ")),
            meta.uid()
        ),
        rule.fix(format!(
            "chown {} {}",
            user_name(euid).unwrap_or_else(|| euid.to_string()),
            path.display()
        )),
    ))
}

fn mode(meta: &Metadata) -> u32 {
    meta.mode() & 0o7777
}

/// A directory this tool writes in (the prefix, the directory of
/// `config.toml`): owned by root or the caller, writable by nobody else.
/// Every directory on the way to it must be owned by root or the caller
/// and writable by nobody else unless sticky (`/tmp`), and every symlink on
/// the way must be owned by root or the caller (see [`resolve`]).
pub fn check_dir(dir: &Path) -> Result<()> {
    let real = resolve(dir)?;
    let meta = std::fs::symlink_metadata(&real).map_err(|e| Error::read(dir, e))?;
    if !meta.is_dir() {
        return Err(Error::config(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if mode(&meta) & 0o022 != 0 {
        return Err(denied(
            dir,
            format!(
                "it is writable by group or others (mode {:04o}), who could then change this host's runners",
                mode(&meta)
            ),
            format!("chmod go-w {}", dir.display()),
        ));
    }
    Ok(())
}

/// The directory holding a file this tool reads (the template, the CA
/// file): the rules of the directories on the way (see [`resolve`]).
pub fn check_parent_dirs(file: &Path) -> Result<()> {
    let abs = absolute(file)?;
    let Some(dir) = abs.parent() else {
        return Ok(());
    };
    let real = resolve(dir)?;
    let meta = std::fs::symlink_metadata(&real).map_err(|e| Error::read(dir, e))?;
    check_passage(&real, &meta, effective_uid(), Rule::Data)
}

/// A program root runs at every start of a service (setup's
/// `ExecStartPre=`): every directory from `/` to it and every symlink on
/// the way owned by root or the caller, and no directory writable by
/// others, sticky or not (see [`Rule::Program`]); the file itself a regular
/// file owned by root or the caller and writable by nobody else. Every
/// refusal (77) names `fix`. The real path.
pub fn check_program(path: &Path, fix: &str) -> Result<PathBuf> {
    let rule = Rule::Program { fix };
    let real = walk(path, rule)?;
    let meta = std::fs::symlink_metadata(&real).map_err(|e| Error::read(&real, e))?;
    check_file_by(&real, &meta, Class::Input, rule)?;
    Ok(real)
}

/// Walk `path` from `/` one component at a time, as the kernel resolves
/// it, and check what each step relies on: every directory passed through
/// (owned by root or the caller; writable by others only when sticky), and
/// every symlink followed (owned by root or the caller, since a sticky
/// directory lets its owner replace it). The last component must be a
/// directory owned by root or the caller. The real path.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    walk(path, Rule::Data)
}

/// [`resolve`] under `rule`: with [`Rule::Program`] no directory passed
/// through may be writable by others even when sticky, and the last
/// component may be a file.
fn walk(path: &Path, rule: Rule) -> Result<PathBuf> {
    let euid = effective_uid();
    let mut todo: Vec<std::ffi::OsString> = Vec::new();
    push_components(&mut todo, &absolute(path)?);
    let mut cur = PathBuf::from("/");
    check_passage(
        &cur,
        &std::fs::symlink_metadata(&cur).map_err(|e| Error::read(&cur, e))?,
        euid,
        rule,
    )?;
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&name);
        let meta = std::fs::symlink_metadata(&next).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::config(format!("{} does not exist", next.display()))
            }
            _ => Error::read(&next, e),
        })?;
        if meta.file_type().is_symlink() {
            check_owner(&next, &meta, euid, rule)?;
            links += 1;
            if links > 40 {
                return Err(Error::config(format!(
                    "{}: too many levels of symbolic links",
                    path.display()
                )));
            }
            let target = std::fs::read_link(&next).map_err(|e| Error::read(&next, e))?;
            if target.is_absolute() {
                cur = PathBuf::from("/");
            }
            push_components(&mut todo, &target);
            continue;
        }
        if !meta.is_dir() {
            if todo.is_empty() && matches!(rule, Rule::Program { .. }) {
                return Ok(next);
            }
            return Err(Error::config(format!(
                "{} is not a directory",
                next.display()
            )));
        }
        check_owner(&next, &meta, euid, rule)?;
        if !todo.is_empty() {
            check_passage(&next, &meta, euid, rule)?;
        }
        cur = next;
    }
    Ok(cur)
}

/// Push the components of `p` onto the stack `todo` (so that they pop in
/// order), without `.`.
fn push_components(todo: &mut Vec<std::ffi::OsString>, p: &Path) {
    let parts: Vec<std::ffi::OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    todo.extend(parts.into_iter().rev());
}

/// A directory passed through on the way: owned by root or the caller,
/// writable by others only when sticky (never under [`Rule::Program`]).
fn check_passage(dir: &Path, meta: &Metadata, euid: u32, rule: Rule) -> Result<()> {
    check_owner(dir, meta, euid, rule)?;
    let m = mode(meta);
    if m & 0o022 == 0 {
        return Ok(());
    }
    let why = match rule {
        Rule::Data if m & 0o1000 != 0 => return Ok(()),
        Rule::Data => format!(
            "it is writable by group or others without the sticky bit (mode {m:04o}), so they could replace what lies below it"
        ),
        Rule::Program { .. } => format!(
            "it is writable by group or others (mode {m:04o}), so they could replace the program below it (sticky or not: once a tmp cleaner removes it, anyone may put their own there)"
        ),
    };
    Err(denied(
        dir,
        why,
        rule.fix(format!("chmod go-w {}", dir.display())),
    ))
}

/// `path` made absolute against the working directory, with `.` removed.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    let base = if path.is_absolute() {
        PathBuf::new()
    } else {
        std::env::current_dir().map_err(|e| Error::read(path, e))?
    };
    Ok(base.join(
        path.components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect::<PathBuf>(),
    ))
}

/// Open `path` for reading without following a symlink or blocking, and
/// check the open file: a regular file, owned by root or the caller, not
/// writable by others (a `Secret`: not readable either). `Ok(None)` when it
/// does not exist.
pub fn open(path: &Path, class: Class) -> Result<Option<(File, Metadata)>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(OPEN_FLAGS)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(denied(
                path,
                "it is a symbolic link".into(),
                format!(
                    "replace it with the file it points to: cp --remove-destination \"$(readlink -f {0})\" {0}",
                    path.display()
                ),
            ));
        }
        Err(e) => return Err(Error::read(path, e)),
    };
    let meta = file.metadata().map_err(|e| Error::read(path, e))?;
    check_file(path, &meta, class)?;
    Ok(Some((file, meta)))
}

/// The refusal for `path` when it is a symlink or not a regular file (what
/// makes an open with [`OPEN_FLAGS`] fail); `fix` is the command that
/// removes it (`rm`).
pub fn not_a_file(path: &Path, fix: &str) -> Option<Error> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let what = if meta.file_type().is_symlink() {
        "it is a symbolic link".to_string()
    } else if !meta.is_file() {
        format!("not a regular file (a {})", kind_of(&meta))
    } else {
        return None;
    };
    Some(Error::denied(format!(
        "refusing {}: {what}; fix it with: {fix} {0}",
        path.display()
    )))
}

/// The rules of [`open`] on a file's metadata.
pub fn check_file(path: &Path, meta: &Metadata, class: Class) -> Result<()> {
    check_file_by(path, meta, class, Rule::Data)
}

/// [`check_file`], each refusal naming the fix of `rule`.
fn check_file_by(path: &Path, meta: &Metadata, class: Class, rule: Rule) -> Result<()> {
    if !meta.is_file() {
        return Err(Error::new(
            Kind::Denied,
            format!(
                "refusing {}: not a regular file (a {}); fix it with: {}",
                path.display(),
                kind_of(meta),
                rule.fix(format!("rm {} and put the real file there", path.display()))
            ),
        ));
    }
    check_owner(path, meta, effective_uid(), rule)?;
    let m = mode(meta);
    let (mask, what, fix) = match class {
        Class::Input => (0o022, "writable", "go-w"),
        Class::Secret => (0o077, "accessible", "600"),
    };
    if m & mask != 0 {
        return Err(denied(
            path,
            format!("it is {what} by group or others (mode {m:04o})"),
            rule.fix(format!("chmod {fix} {}", path.display())),
        ));
    }
    Ok(())
}

fn kind_of(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

/// Read a whole checked file (see [`open`]), at most [`READ_CAP`] bytes.
/// `Ok(None)` when it does not exist.
pub fn read(path: &Path, class: Class) -> Result<Option<Vec<u8>>> {
    let Some((file, _)) = open(path, class)? else {
        return Ok(None);
    };
    read_capped(path, file).map(Some)
}

/// Read `file` (opened from `path`) up to the cap; larger is an error.
pub fn read_capped(path: &Path, file: File) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(READ_CAP + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::read(path, e))?;
    if bytes.len() as u64 > READ_CAP {
        return Err(Error::data(format!(
            "failed to read {}: larger than {} KiB; this is not the file it should be",
            path.display(),
            READ_CAP / 1024
        )));
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text.
pub fn read_text(path: &Path, class: Class) -> Result<Option<String>> {
    read(path, class)?
        .map(|b| {
            String::from_utf8(b).map_err(|_| {
                Error::data(format!("failed to read {}: not UTF-8 text", path.display()))
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gra-trust-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    fn chmod(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn files_by_class() {
        let d = scratch("files");
        let f = d.join("f");
        std::fs::write(&f, "x").unwrap();
        let cases = [
            (0o600, Class::Secret, true),
            (0o400, Class::Secret, true),
            (0o640, Class::Secret, false),
            (0o604, Class::Secret, false),
            (0o644, Class::Input, true),
            (0o664, Class::Input, false),
            (0o646, Class::Input, false),
        ];
        for (m, class, ok) in cases {
            chmod(&f, m);
            let r = read(&f, class);
            assert_eq!(r.is_ok(), ok, "{m:o} {class:?}: {r:?}");
            if let Err(e) = r {
                assert_eq!(e.exit_code(), 77);
                assert!(e.to_string().contains("fix it with: chmod"), "{e}");
            }
        }
        assert!(read(&d.join("missing"), Class::Input).unwrap().is_none());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn symlinks_fifos_and_huge_files_are_refused() {
        let d = scratch("special");
        let link = d.join("link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = read(&link, Class::Input).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let dir = d.join("sub");
        std::fs::create_dir(&dir).unwrap();
        let e = read(&dir, Class::Input).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let big = d.join("big");
        std::fs::write(&big, vec![b'a'; READ_CAP as usize + 1]).unwrap();
        chmod(&big, 0o600);
        let e = read(&big, Class::Input).unwrap_err();
        assert_eq!(e.exit_code(), 65, "{e}");
        std::fs::write(&big, vec![b'a'; READ_CAP as usize]).unwrap();
        assert_eq!(
            read(&big, Class::Input).unwrap().unwrap().len() as u64,
            READ_CAP
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn directories_and_parents() {
        let d = scratch("dirs");
        let prefix = d.join("prefix");
        std::fs::create_dir(&prefix).unwrap();
        chmod(&prefix, 0o755);
        check_dir(&prefix).unwrap();
        chmod(&prefix, 0o775);
        let e = check_dir(&prefix).unwrap_err();
        assert!(e.to_string().contains("chmod go-w"), "{e}");
        chmod(&prefix, 0o1777);
        assert!(
            check_dir(&prefix).is_err(),
            "sticky does not excuse the directory itself"
        );
        chmod(&prefix, 0o700);
        chmod(&d, 0o777);
        let e = check_dir(&prefix).unwrap_err();
        assert!(e.to_string().contains("without the sticky bit"), "{e}");
        chmod(&d, 0o1777);
        check_dir(&prefix).unwrap();
        chmod(&d, 0o700);
        // through a symlink whose target is under a writable parent
        let open_dir = d.join("open");
        std::fs::create_dir(&open_dir).unwrap();
        chmod(&open_dir, 0o777);
        let target = open_dir.join("real");
        std::fs::create_dir(&target).unwrap();
        chmod(&target, 0o700);
        let link = d.join("via-link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(check_dir(&link).is_err());
        // a chain: d/a -> d/m/n -> d/x, with d/m writable by others; the
        // directory holding the middle link is checked too
        let m = d.join("m");
        std::fs::create_dir(&m).unwrap();
        chmod(&m, 0o777);
        let x = d.join("x");
        std::fs::create_dir(&x).unwrap();
        chmod(&x, 0o700);
        std::fs::create_dir(x.join("p")).unwrap();
        chmod(&x.join("p"), 0o700);
        std::os::unix::fs::symlink(&x, m.join("n")).unwrap();
        std::os::unix::fs::symlink(m.join("n"), d.join("a")).unwrap();
        let e = check_dir(&d.join("a/p")).unwrap_err();
        assert!(e.to_string().contains(&m.display().to_string()), "{e}");
        chmod(&m, 0o755);
        assert_eq!(resolve(&d.join("a/p")).unwrap(), x.join("p"));
        check_dir(&d.join("a/p")).unwrap();
        // .. after a link is taken from where the link led
        assert_eq!(resolve(&d.join("a/p/..")).unwrap(), x);
        if effective_uid() == 0 {
            // a link another user owns (they could replace it in a sticky
            // directory) is refused
            let sticky = d.join("sticky");
            std::fs::create_dir(&sticky).unwrap();
            chmod(&sticky, 0o1777);
            let theirs = sticky.join("link");
            std::os::unix::fs::symlink(&x, &theirs).unwrap();
            std::os::unix::fs::lchown(&theirs, Some(65534), None).unwrap();
            let e = check_dir(&theirs.join("p")).unwrap_err();
            assert!(e.to_string().contains("owned by"), "{e}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
