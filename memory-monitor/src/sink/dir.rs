//! `dir:PATH`: each profile a file in a directory, complete or absent, never overwriting.
//!
//! Profiles name other users' files and functions, and the directory's path is the monitor's
//! to trust: it is made at the first profile, not at start (an unused option makes nothing),
//! `0700`, and only its last component (a missing parent is an error, not a tree of new
//! directories); its parents are checked and it is opened without following a symbolic link,
//! and must be the monitor's own and writable by no one else (`host::trust`). The files are
//! then made and renamed relative to that open directory (`openat`, `renameat`), so no path
//! is resolved again between the check and the write.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, RenameFlags, mkdirat, open, openat, renameat_with};

use super::{ProfileWriter, WriteError};

/// Writes profiles as files in a directory.
#[derive(Debug)]
pub struct DirWriter {
    dir: PathBuf,
}

impl DirWriter {
    /// A writer into `dir`, made when the first profile is written. A parent that is missing
    /// or untrusted now is warned about; each profile that cannot be written is a logged
    /// failure, not a stopped monitor (a mount may be still to come).
    pub fn new(dir: &Path) -> DirWriter {
        let parent = absolute_parent(dir);
        if let Err(error) = parent.and_then(|p| trusted(&p)) {
            tracing::warn!(
                event = "profile_dir_unwritable",
                "profiles cannot be written to {} yet: {error}",
                dir.display()
            );
        }
        DirWriter {
            dir: dir.to_owned(),
        }
    }

    /// The directory, opened: made (`0700`) if missing, never through a symbolic link, and
    /// checked with everything above it.
    fn open(&self) -> io::Result<OwnedFd> {
        let parent = absolute_parent(&self.dir)?;
        trusted(&parent)?;
        let name = self
            .dir
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no directory name"))?;
        let parent = open(
            &parent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        match mkdirat(&parent, name, Mode::RWXU) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(error) => return Err(error.into()),
        }
        let dir = openat(
            &parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        crate::host::trust::check(&self.dir, &dir, FileType::Directory)
            .map_err(io::Error::other)?;
        Ok(dir)
    }
}

/// The resolved, absolute path of `dir`'s parent.
fn absolute_parent(dir: &Path) -> io::Result<PathBuf> {
    let absolute = std::path::absolute(dir)?;
    let parent = absolute.parent().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the root is no profile directory",
        )
    })?;
    std::fs::canonicalize(parent)
}

/// Checks `parent` and everything above it.
fn trusted(parent: &Path) -> io::Result<()> {
    crate::host::trust::check_directories(parent).map_err(io::Error::other)
}

impl ProfileWriter for DirWriter {
    /// Writes a hidden temporary file, syncs it and renames it into place without replacing
    /// anything, so a reader never sees half a profile and no profile is overwritten.
    fn write(&self, name: &str, profile: &[u8]) -> Result<(), WriteError> {
        let temporary = format!(".{name}.partial");
        let dir = self
            .open()
            .map_err(|error| format!("cannot write into {}: {error}", self.dir.display()))?;
        let written = (|| {
            // Profiles name other users' files and functions: readable by the monitor's user only.
            let file = openat(
                &dir,
                &temporary,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::RUSR | Mode::WUSR,
            )?;
            let mut file = File::from(file);
            file.write_all(profile)?;
            file.sync_all()?;
            renameat_with(&dir, &temporary, &dir, name, RenameFlags::NOREPLACE)?;
            Ok::<_, io::Error>(())
        })();
        if let Err(error) = written {
            let _ = rustix::fs::unlinkat(&dir, &temporary, rustix::fs::AtFlags::empty());
            let target = self.dir.join(name);
            return Err(format!("cannot write {}: {error}", target.display()).into());
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("dir:{}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_profile_lands_whole_and_is_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("mm-dir-writer-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let writer = DirWriter::new(&dir);
        assert!(!dir.exists(), "made at the first profile, not before");
        writer.write("one.pb.gz", b"first").unwrap();
        assert!(writer.write("one.pb.gz", b"second").is_err());
        assert_eq!(fs::read(dir.join("one.pb.gz")).unwrap(), b"first");
        let left: Vec<_> = fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("one.pb.gz")), 0o600, "profiles are private");
        assert_eq!(mode(&dir), 0o700);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A fresh parent directory, 0755, under the sticky `/tmp`.
    fn parent(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mm-dir-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn a_symbolic_link_in_place_of_the_directory_is_not_followed() {
        let parent = parent("link");
        let elsewhere = parent.join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let dir = parent.join("profiles");
        std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
        assert!(DirWriter::new(&dir).write("p.pb.gz", b"x").is_err());
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
        fs::remove_dir_all(&parent).unwrap();
    }

    #[test]
    fn a_directory_others_may_write_or_a_missing_parent_is_refused() {
        let parent = parent("modes");
        let dir = parent.join("profiles");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let refused = DirWriter::new(&dir).write("p.pb.gz", b"x").unwrap_err();
        assert!(refused.to_string().contains("writable"), "{refused}");
        // Only the last component is made: never a tree of parents.
        let deep = parent.join("missing/profiles");
        assert!(DirWriter::new(&deep).write("p.pb.gz", b"x").is_err());
        assert!(!parent.join("missing").exists());
        fs::remove_dir_all(&parent).unwrap();
    }
}
