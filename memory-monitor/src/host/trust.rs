//! Files the monitor acts on, checked as sshd's StrictModes checks `authorized_keys`: its rules
//! file (whose `exec` entries it runs as root) and its profile directory (where it writes
//! other users' memory maps) must be changeable by no one but root or the monitor's own user.
//!
//! A file or directory is trusted when it, and every directory above it (after symbolic links
//! are resolved: a Kubernetes ConfigMap is a chain of them), is owned by root or the
//! monitor's user and writable by neither its group nor others. Two exceptions leave no one
//! else a way in: a directory on a read-only mount (a ConfigMap's), and a directory with the
//! sticky bit (`/tmp`), where an entry can be renamed or removed by its owner only.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, StatVfsMountFlags, fstat, fstatvfs, open};

/// What an untrusted file or directory must be instead.
const MUST: &str = "; it must be owned by root (or the monitor's user) and writable by no one else";

/// Why a file or directory is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {why}", path.display())]
pub(crate) struct Untrusted {
    /// The file or directory at fault (the checked one, or a directory above it).
    pub(crate) path: PathBuf,
    /// What is wrong with it, and what it must be.
    pub(crate) why: String,
}

impl Untrusted {
    fn new(path: &Path, why: impl Into<String>) -> Untrusted {
        Untrusted {
            path: path.to_owned(),
            why: why.into(),
        }
    }
}

/// Opens the file at `path` for reading once it, and every directory above it, is trusted.
/// The file's own checks are made on what was opened, so it cannot be swapped in between.
pub(crate) fn open_trusted_file(path: &Path) -> Result<File, Untrusted> {
    let real = std::fs::canonicalize(path).map_err(|e| Untrusted::new(path, e.to_string()))?;
    let file = open(
        &real,
        OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Untrusted::new(&real, e.to_string()))?;
    check(&real, &file, FileType::RegularFile)?;
    if let Some(parent) = real.parent() {
        check_directories(parent)?;
    }
    Ok(File::from(file))
}

/// Checks the directory `dir` and every one above it (`dir` must be absolute and resolved).
pub(crate) fn check_directories(dir: &Path) -> Result<(), Untrusted> {
    for dir in dir.ancestors() {
        let fd = open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Untrusted::new(dir, e.to_string()))?;
        check(dir, &fd, FileType::Directory)?;
    }
    Ok(())
}

/// Checks what `fd` (opened at `path`) is: of the kind `kind`, owned by root or this process's
/// user, and writable by no one else (unless as the module says).
pub(crate) fn check(path: &Path, fd: impl AsFd, kind: FileType) -> Result<(), Untrusted> {
    let stat = fstat(&fd).map_err(|e| Untrusted::new(path, e.to_string()))?;
    let found = FileType::from_raw_mode(stat.st_mode);
    if found != kind {
        return Err(Untrusted::new(path, format!("a {found:?}, not a {kind:?}")));
    }
    let me = rustix::process::geteuid().as_raw();
    if stat.st_uid != 0 && stat.st_uid != me {
        let why = format!("owned by uid {}{MUST}", stat.st_uid);
        return Err(Untrusted::new(path, why));
    }
    let mode = Mode::from_raw_mode(stat.st_mode);
    let others_write = mode.intersects(Mode::WGRP | Mode::WOTH);
    let sticky = kind == FileType::Directory && mode.contains(Mode::SVTX);
    if !others_write || sticky {
        return Ok(());
    }
    let read_only = fstatvfs(&fd).is_ok_and(|fs| fs.f_flag.contains(StatVfsMountFlags::RDONLY));
    match read_only {
        true => Ok(()),
        false => Err(Untrusted::new(
            path,
            format!(
                "writable by its group or others (mode {:o}){MUST}",
                stat.st_mode & 0o7777
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// A fresh directory of this test's, 0755, under the sticky `/tmp`.
    fn fresh(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mm-trust-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn a_file_writable_by_others_or_in_a_directory_they_may_write_is_refused() {
        let dir = fresh("modes");
        let file = dir.join("rules.toml");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(open_trusted_file(&file).is_ok());
        // Through a symbolic link, the file it names is what counts.
        let link = dir.join("link.toml");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(open_trusted_file(&link).is_ok());
        for mode in [0o664, 0o646] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            let refused = open_trusted_file(&link).unwrap_err();
            assert_eq!(refused.path, file, "{mode:o}");
            assert!(refused.why.contains("writable"), "{refused}");
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        // Its directory, writable by others without the sticky bit: anyone may swap the file.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(open_trusted_file(&file).unwrap_err().path, dir);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(open_trusted_file(&file).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_fifo_is_not_a_file_and_is_not_waited_on() {
        let dir = fresh("fifo");
        let fifo = dir.join("rules.toml");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600)).unwrap();
        assert!(open_trusted_file(&fifo).unwrap_err().why.contains("Fifo"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
