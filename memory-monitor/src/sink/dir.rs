//! `dir:PATH`: each profile a file in a directory, complete or absent, never overwriting.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, RenameFlags, renameat_with};

use super::{ProfileWriter, WriteError};

/// Writes profiles as files in a directory.
#[derive(Debug)]
pub struct DirWriter {
    dir: PathBuf,
}

impl DirWriter {
    /// A writer into `dir`, created (with its parents) when missing, now and at each write:
    /// a directory that cannot be made yet (a mount still to come) is warned about, and each
    /// profile that cannot be written is a logged failure, not a stopped monitor.
    pub fn new(dir: &Path) -> DirWriter {
        if let Err(error) = create_private_dir(dir) {
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
}

/// Creates `dir` and its missing parents, the ones it creates readable by their owner only.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

impl ProfileWriter for DirWriter {
    /// Writes a hidden temporary file, syncs it and renames it into place without replacing
    /// anything, so a reader never sees half a profile and no profile is overwritten.
    fn write(&self, name: &str, profile: &[u8]) -> Result<(), WriteError> {
        let target = self.dir.join(name);
        let temporary = self.dir.join(format!(".{name}.partial"));
        let written = (|| {
            create_private_dir(&self.dir)?;
            // Profiles name other users' files and functions: readable by the monitor's user only.
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(profile)?;
            file.sync_all()?;
            renameat_with(CWD, &temporary, CWD, &target, RenameFlags::NOREPLACE)?;
            Ok::<_, io::Error>(())
        })();
        if let Err(error) = written {
            let _ = fs::remove_file(&temporary);
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
    use super::*;

    #[test]
    fn a_profile_lands_whole_and_is_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("mm-dir-writer-{}", std::process::id()));
        let writer = DirWriter::new(&dir);
        writer.write("one.pb.gz", b"first").unwrap();
        assert!(writer.write("one.pb.gz", b"second").is_err());
        assert_eq!(fs::read(dir.join("one.pb.gz")).unwrap(), b"first");
        let left: Vec<_> = fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("one.pb.gz")), 0o600, "profiles are private");
        assert_eq!(mode(&dir), 0o700);
        fs::remove_dir_all(&dir).unwrap();
    }
}
