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

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;

use crate::system::cgroup::CgroupPath;

/// What a ConfigMap's mounted directory swaps when its contents change.
const CONFIG_MAP_DATA: &str = "..data";

/// What changed since the last look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Changed {
    /// A followed limit file was written.
    pub(crate) limits: bool,
    /// A rule's cgroup (or a directory on the way to it) was made or removed.
    pub(crate) cgroups: bool,
    /// The rules file was replaced or rewritten.
    pub(crate) rules_file: bool,
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
pub(crate) struct Changes {
    inotify: OwnedFd,
    buf: Box<[MaybeUninit<u8>]>,
    /// Directories watched, by watch descriptor, and the names awaited in them.
    awaited: Vec<(i32, Awaited)>,
    /// The rules file followed (`--watch-config`).
    rules_file: Option<PathBuf>,
    /// Whether the watch limit was hit (said once).
    said_full: bool,
}

/// How many links a rules file may be reached through (a ConfigMap's is two deep).
const MAX_LINKS: usize = 8;

impl Changes {
    /// A new inotify instance, following nothing yet.
    pub(crate) fn new() -> io::Result<Changes> {
        Ok(Changes {
            inotify: inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?,
            buf: vec![MaybeUninit::uninit(); 4096].into_boxed_slice(),
            awaited: Vec::new(),
            rules_file: None,
            said_full: false,
        })
    }

    /// A descriptor to wait on (readable when something changed): a duplicate, so that a
    /// waiter may own it.
    pub(crate) fn waitable(&self) -> io::Result<OwnedFd> {
        self.inotify.try_clone()
    }

    /// Follows the cgroups `rules` name (replacing what was followed for them before): for
    /// each, the directory it is in when it exists, else the deepest of its ancestors that
    /// does, for the next name on the way. Follow first, then look whether they exist: a
    /// cgroup made in between is then seen either way.
    pub(crate) fn follow_cgroups<'a>(&mut self, cgroups: impl IntoIterator<Item = &'a CgroupPath>) {
        let before = self.watched();
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
        self.unwatch_unawaited(&before);
    }

    /// Follows the rules file at `path` (`--watch-config`): the directory it is in, and, when
    /// it is a link, each directory on the way to what it leads to (a ConfigMap's file is a
    /// link into its `..data` link); followed anew whenever it changes.
    pub(crate) fn follow_rules_file(&mut self, path: &Path) -> io::Result<()> {
        self.rules_file = Some(path.to_path_buf());
        self.refollow_rules_file()
    }

    fn refollow_rules_file(&mut self) -> io::Result<()> {
        let Some(mut path) = self.rules_file.clone() else {
            return Ok(());
        };
        let before = self.watched();
        self.awaited
            .retain(|(_, awaited)| !matches!(awaited, Awaited::RulesFile(_)));
        let mut result = Ok(());
        for hop in 0..MAX_LINKS {
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
                | WatchFlags::DELETE_SELF
                | WatchFlags::MOVE_SELF
                | WatchFlags::ONLYDIR
                | WatchFlags::MASK_ADD;
            match inotify::add_watch(&self.inotify, &dir, flags) {
                Ok(wd) => {
                    self.awaited.push((wd, Awaited::RulesFile(name)));
                    if hop == 0 {
                        self.awaited
                            .push((wd, Awaited::RulesFile(CONFIG_MAP_DATA.to_string())));
                    }
                }
                // The file's own directory must be followed; further hops are a bonus.
                Err(errno) if hop == 0 => result = Err(errno.into()),
                Err(_) => {}
            }
            match std::fs::read_link(&path) {
                Ok(target) => path = dir.join(target),
                Err(_) => break,
            }
        }
        self.unwatch_unawaited(&before);
        result
    }

    /// Follows writes to the limit file `file`. Following a file twice is following it once;
    /// a watch goes by itself when its cgroup is removed.
    pub(crate) fn follow_limit(&mut self, file: &CStr) {
        if let Err(errno) = inotify::add_watch(&self.inotify, file, WatchFlags::MODIFY) {
            self.said_failure(errno, Path::new(&*file.to_string_lossy()));
        }
    }

    fn watch_dir(&mut self, dir: &Path, awaited: Awaited) {
        let flags = WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::MOVED_TO
            | WatchFlags::MOVED_FROM
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF
            | WatchFlags::ONLYDIR
            | WatchFlags::MASK_ADD;
        match inotify::add_watch(&self.inotify, dir, flags) {
            Ok(wd) => self.awaited.push((wd, awaited)),
            Err(errno) => self.said_failure(errno, dir),
        }
    }

    /// The directories watched now.
    fn watched(&self) -> Vec<i32> {
        self.awaited.iter().map(|(wd, _)| *wd).collect()
    }

    /// Stops watching the directories of `before` that nothing awaits any more.
    fn unwatch_unawaited(&self, before: &[i32]) {
        for wd in before {
            if !self.awaited.iter().any(|(awaited, _)| awaited == wd) {
                let _ = inotify::remove_watch(&self.inotify, *wd);
            }
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

    /// What changed since the last call; never waits. A rules file that changed is followed
    /// anew (its links may lead elsewhere now).
    pub(crate) fn take(&mut self) -> Changed {
        let changed = self.read();
        if changed.rules_file && self.refollow_rules_file().is_err() {
            tracing::warn!(
                event = "changes_unfollowed",
                "the rules file's directory cannot be followed any more; SIGHUP reads it again"
            );
        }
        changed
    }

    /// Reads the waiting events. Allocates nothing.
    fn read(&mut self) -> Changed {
        let mut changed = Changed::default();
        let following_rules = self.rules_file.is_some();
        let mut reader = inotify::Reader::new(self.inotify.as_fd(), &mut self.buf);
        loop {
            let event = match reader.next() {
                Ok(event) => event,
                Err(Errno::INTR) => continue,
                Err(_) => break,
            };
            let flags = event.events();
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                // Events were dropped: assume everything followed changed.
                return Changed {
                    limits: true,
                    cgroups: true,
                    rules_file: following_rules,
                };
            }
            if flags.contains(ReadFlags::MODIFY) && event.file_name().is_none() {
                changed.limits = true;
            }
            // A watched directory itself went (removed, moved): what it awaited must be
            // followed from elsewhere. (Directories this monitor stopped watching itself are
            // no longer awaited, so their ending is no change.)
            let gone = flags
                .intersects(ReadFlags::IGNORED | ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF);
            let name = event.file_name().map(CStr::to_bytes);
            for (wd, awaited) in &self.awaited {
                if *wd != event.wd() {
                    continue;
                }
                let (wanted, change) = match awaited {
                    Awaited::Cgroup(wanted) => (wanted, &mut changed.cgroups),
                    Awaited::RulesFile(wanted) => (wanted, &mut changed.rules_file),
                };
                if gone || name == Some(wanted.as_bytes()) {
                    *change = true;
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
    fn a_rules_file_reached_through_a_link_is_followed_where_it_is() {
        let base = std::env::temp_dir().join(format!("mm-changes-link-{}", std::process::id()));
        let (etc, srv) = (base.join("etc"), base.join("srv"));
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&srv).unwrap();
        std::fs::write(srv.join("rules.toml"), "a").unwrap();
        std::os::unix::fs::symlink(srv.join("rules.toml"), etc.join("rules.toml")).unwrap();
        let mut changes = Changes::new().unwrap();
        changes.follow_rules_file(&etc.join("rules.toml")).unwrap();
        // The file the link leads to, saved by an editor.
        std::fs::write(srv.join("rules.toml.new"), "b").unwrap();
        std::fs::rename(srv.join("rules.toml.new"), srv.join("rules.toml")).unwrap();
        assert!(changes.take().rules_file);
        // The link itself replaced, to lead elsewhere; then what it leads to now is followed.
        let other = base.join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("rules.toml"), "c").unwrap();
        std::os::unix::fs::symlink(other.join("rules.toml"), etc.join("link.new")).unwrap();
        std::fs::rename(etc.join("link.new"), etc.join("rules.toml")).unwrap();
        assert!(changes.take().rules_file);
        std::fs::write(other.join("rules.toml"), "d").unwrap();
        assert!(changes.take().rules_file);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_watched_directory_that_goes_is_a_change_and_one_let_go_is_not() {
        let base = std::env::temp_dir().join(format!("mm-changes-gone-{}", std::process::id()));
        let (parent, kept) = (base.join("parent"), base.join("kept"));
        std::fs::create_dir_all(&parent).unwrap();
        std::fs::create_dir_all(&kept).unwrap();
        let mut changes = Changes::new().unwrap();
        changes.watch_dir(&parent, Awaited::Cgroup("child".to_string()));
        changes.watch_dir(&kept, Awaited::Cgroup("child".to_string()));
        assert_eq!(changes.take(), Changed::default());
        // The directory in which the cgroup was awaited is removed (its parent restarted).
        std::fs::remove_dir(&parent).unwrap();
        assert!(changes.take().cgroups);
        // Let go of by the monitor itself: no change.
        let before = changes.watched();
        changes.awaited.clear();
        changes.unwatch_unawaited(&before);
        assert_eq!(changes.take(), Changed::default());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_followed_file_written_is_a_limit_change() {
        let file = std::env::temp_dir().join(format!("mm-limit-{}", std::process::id()));
        std::fs::write(&file, "1").unwrap();
        let mut changes = Changes::new().unwrap();
        let name = std::ffi::CString::new(file.to_str().unwrap()).unwrap();
        changes.follow_limit(&name);
        changes.follow_limit(&name);
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
