//! Changes made under the monitor that it must follow, learned from inotify (cgroupfs reports
//! writes and directories made or removed like any file system), so nothing is polled:
//!
//! - a cgroup memory limit rewritten (`systemctl set-property`, a pod resized): limits given as
//!   a share of it are worked out again;
//! - a rule's cgroup made or removed (a service or a container started, stopped, restarted):
//!   the rule matches it again, or no longer;
//! - the rules file rewritten (`--watch-config`): the rules are read again, as on `SIGHUP`.
//!   Editors write a file aside and rename it over the old one, and Kubernetes swaps the
//!   `..data` link of a ConfigMap's directory, so the file's directory is what is watched.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;

use crate::cgroup::CgroupPath;

/// What a ConfigMap's mounted directory swaps when its contents change.
const CONFIG_MAP_DATA: &str = "..data";

/// What changed since the last look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    /// A followed limit file was written.
    pub limits: bool,
    /// A rule's cgroup (or a directory on the way to it) was made or removed.
    pub cgroups: bool,
    /// The rules file was replaced or rewritten.
    pub rules_file: bool,
}

/// What a watched directory is watched for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Awaited {
    /// The entry with this name: a rule's cgroup, or the next directory on the way to it.
    Cgroup(String),
    /// The rules file (or a ConfigMap's `..data`).
    RulesFile(String),
}

/// The inotify instance and what its watches are for.
#[derive(Debug)]
pub struct Changes {
    inotify: OwnedFd,
    buf: Box<[MaybeUninit<u8>]>,
    /// Directories watched, by watch descriptor, and the names awaited in them.
    awaited: Vec<(i32, Awaited)>,
    /// Whether the watch limit was hit (said once).
    said_full: bool,
}

impl Changes {
    /// A new inotify instance, following nothing yet.
    pub fn new() -> io::Result<Changes> {
        Ok(Changes {
            inotify: inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?,
            buf: vec![MaybeUninit::uninit(); 4096].into_boxed_slice(),
            awaited: Vec::new(),
            said_full: false,
        })
    }

    /// A descriptor to wait on (readable when something changed): a duplicate, so that a
    /// waiter may own it.
    pub fn waitable(&self) -> io::Result<OwnedFd> {
        self.inotify.try_clone()
    }

    /// Follows the cgroups `rules` name (replacing what was followed for them before): for
    /// each, the directory it is in when it exists, else the deepest of its ancestors that
    /// does, for the next name on the way.
    pub fn follow_cgroups<'a>(&mut self, cgroups: impl IntoIterator<Item = &'a CgroupPath>) {
        self.awaited
            .retain(|(_, awaited)| !matches!(awaited, Awaited::Cgroup(_)));
        for cgroup in cgroups {
            let mut child = cgroup.clone();
            while let Some((parent, name)) = child.split_last() {
                let name = name.to_string();
                if let Ok(dir) = parent.directory()
                    && dir.is_dir()
                {
                    self.watch_dir(&dir, Awaited::Cgroup(name));
                    break;
                }
                child = parent;
            }
        }
    }

    /// Follows the rules file at `path` (`--watch-config`).
    pub fn follow_rules_file(&mut self, path: &Path) -> io::Result<()> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let flags = WatchFlags::CLOSE_WRITE
            | WatchFlags::MOVED_TO
            | WatchFlags::CREATE
            | WatchFlags::ONLYDIR;
        let wd = inotify::add_watch(&self.inotify, &dir, flags)?;
        self.awaited.push((wd, Awaited::RulesFile(name)));
        self.awaited
            .push((wd, Awaited::RulesFile(CONFIG_MAP_DATA.to_string())));
        Ok(())
    }

    /// Follows writes to the limit file `file`. Following a file twice is following it once;
    /// a watch goes by itself when its cgroup is removed.
    pub fn follow_limit(&mut self, file: &Path) {
        if let Err(errno) = inotify::add_watch(&self.inotify, file, WatchFlags::MODIFY) {
            self.said_failure(errno, file);
        }
    }

    fn watch_dir(&mut self, dir: &Path, awaited: Awaited) {
        let flags = WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::MOVED_TO
            | WatchFlags::MOVED_FROM
            | WatchFlags::ONLYDIR;
        match inotify::add_watch(&self.inotify, dir, flags) {
            Ok(wd) => self.awaited.push((wd, awaited)),
            Err(errno) => self.said_failure(errno, dir),
        }
    }

    fn said_failure(&mut self, errno: Errno, path: &Path) {
        if errno == Errno::NOSPC && std::mem::replace(&mut self.said_full, true) {
            return;
        }
        tracing::warn!(
            event = "changes_unfollowed",
            "cannot follow changes of {} ({errno}{}); they are seen on the next reload",
            path.display(),
            if errno == Errno::NOSPC {
                ": raise fs.inotify.max_user_watches"
            } else {
                ""
            }
        );
    }

    /// What changed since the last call; never waits. Allocates nothing.
    pub fn take(&mut self) -> Changed {
        let mut changed = Changed::default();
        let mut reader = inotify::Reader::new(self.inotify.as_fd(), &mut self.buf);
        loop {
            let event = match reader.next() {
                Ok(event) => event,
                Err(Errno::INTR) => continue,
                Err(_) => break,
            };
            let flags = event.events();
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                // Events were dropped: assume everything changed.
                return Changed {
                    limits: true,
                    cgroups: true,
                    rules_file: true,
                };
            }
            if flags.contains(ReadFlags::MODIFY) && event.file_name().is_none() {
                changed.limits = true;
            }
            let Some(name) = event.file_name() else {
                continue;
            };
            let name = name.to_bytes();
            for (wd, awaited) in &self.awaited {
                if *wd != event.wd() {
                    continue;
                }
                match awaited {
                    Awaited::Cgroup(wanted) if wanted.as_bytes() == name => changed.cgroups = true,
                    Awaited::RulesFile(wanted) if wanted.as_bytes() == name => {
                        changed.rules_file = true
                    }
                    _ => {}
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rules_file_replaced_in_either_way_is_seen() {
        let dir = std::env::temp_dir().join(format!("mm-changes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rules.toml");
        std::fs::write(&file, "a").unwrap();
        let mut changes = Changes::new().unwrap();
        changes.follow_rules_file(&file).unwrap();
        assert_eq!(changes.take(), Changed::default());

        // An editor: written aside, renamed over it.
        std::fs::write(dir.join("rules.toml.new"), "b").unwrap();
        std::fs::rename(dir.join("rules.toml.new"), &file).unwrap();
        assert!(changes.take().rules_file);
        // Rewritten in place.
        std::fs::write(&file, "c").unwrap();
        assert!(changes.take().rules_file);
        // Another file in the directory.
        std::fs::write(dir.join("other"), "x").unwrap();
        assert!(!changes.take().rules_file);
        // A ConfigMap: the ..data link swapped for a new one.
        std::os::unix::fs::symlink("elsewhere", dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join(CONFIG_MAP_DATA)).unwrap();
        assert!(changes.take().rules_file);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_followed_file_written_is_a_limit_change() {
        let file = std::env::temp_dir().join(format!("mm-limit-{}", std::process::id()));
        std::fs::write(&file, "1").unwrap();
        let mut changes = Changes::new().unwrap();
        changes.follow_limit(&file);
        changes.follow_limit(&file);
        assert_eq!(changes.take(), Changed::default());
        std::fs::write(&file, "2").unwrap();
        assert_eq!(
            changes.take(),
            Changed {
                limits: true,
                ..Changed::default()
            }
        );
        std::fs::remove_file(&file).unwrap();
    }
}
