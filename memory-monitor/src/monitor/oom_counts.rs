//! Poll mode's view of the kernel's OOM kills. No tracepoint names a victim there, but the
//! kernel counts its kills, per memory cgroup and machine-wide: the memory cgroup of every
//! watched process is followed (its count opened when the first watched process in it is
//! found, closed when the last one goes), and so is `/proc/vmstat`'s count for the whole
//! machine. A kill counted in a followed cgroup is said under the rule of the processes
//! watched there; every other kill on the machine, under none. Which process it was, a count
//! cannot say: the line says where and how many, and no more.
//!
//! The counts are read at each poll, before the look at `/proc` that forgets the processes
//! killed since: one `pread` per followed cgroup, into the stack; and at once when the kernel
//! says a followed cgroup v2's `memory.events.local` changed (inotify: the kernel notifies
//! every change of its events files), so a kill there is said when it happens. (cgroup v1's
//! `memory.oom_control` says nothing to inotify.) The records are allocated at start-up:
//! following a new cgroup allocates nothing, as admitting a process does not.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd as _, OwnedFd};

use rustix::fs::inotify::{self, CreateFlags, WatchFlags};

use super::Monitor;
use crate::system::cgroup::oom_count_file;
use crate::system::container::Identity;
use crate::system::event_count::{EventCount, OOM_KILL};
use crate::system::procfs::{Escaped, ProcRoot};
use crate::watch::table::ProcessTable;

/// The most memory cgroups followed at once; processes in further cgroups are counted with
/// the machine's (said once).
const MAX_CGROUPS: usize = 512;

/// The most of a cgroup's path kept for its log line (a longer one is cut, and says so).
const PATH_KEPT: usize = 256;

/// The counts poll mode follows.
#[derive(Debug)]
pub(crate) struct OomCounts {
    proc: ProcRoot,
    /// The machine's count (`None` before 4.13).
    machine: Option<EventCount>,
    /// The followed cgroups, by fingerprint, in order (found by binary search).
    cgroups: Vec<Followed>,
    /// The machine's kills not yet matched by a cgroup's: a kill counted by the machine just
    /// after the cgroups were read is matched at the next read, never said twice.
    unmatched: i64,
    /// Whether the one warning about too many cgroups was given.
    warned_full: bool,
    /// Told of writes to the followed cgroups' `memory.events.local` (`None`: not available).
    notify: Option<OwnedFd>,
}

/// One followed memory cgroup.
#[derive(Debug)]
struct Followed {
    /// [`crate::watch::process::memory_cgroup_print`] of its path.
    print: u64,
    /// The rule of a process watched in it (the last one seen).
    rule: usize,
    /// Its path, for the log line: the first `path_len` bytes (cut at [`PATH_KEPT`]).
    path: [u8; PATH_KEPT],
    path_len: usize,
    /// Whether the path was longer.
    path_cut: bool,
    identity: Identity,
    /// Its count (`None`: the kernel keeps none for it, as for the v2 root).
    count: Option<EventCount>,
    /// Whether a watched process was seen in it at the last look.
    seen: bool,
    /// Its inotify watch, where its count file tells of changes.
    watch: Option<i32>,
}

impl OomCounts {
    /// The machine's count, and room for [`MAX_CGROUPS`] cgroups.
    pub(crate) fn new() -> io::Result<OomCounts> {
        Ok(OomCounts {
            proc: ProcRoot::open()?,
            machine: EventCount::open(c"/proc/vmstat", OOM_KILL).ok(),
            cgroups: Vec::with_capacity(MAX_CGROUPS),
            unmatched: 0,
            warned_full: false,
            notify: inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).ok(),
        })
    }

    /// A descriptor readable when a followed count may have changed (a duplicate, for a
    /// waiter to own); `None` when nothing can tell.
    pub(crate) fn waitable(&self) -> Option<OwnedFd> {
        self.notify.as_ref()?.try_clone().ok()
    }

    /// Reads away what the kernel said (the counts themselves are read next). Allocates
    /// nothing.
    pub(crate) fn drain_notices(&self) {
        let Some(notify) = &self.notify else {
            return;
        };
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(notify.as_fd(), &mut buf);
        while reader.next().is_ok() {}
    }

    /// Follows the memory cgroups of the processes in `watched`, and only those.
    pub(crate) fn follow(&mut self, watched: &ProcessTable) {
        for cgroup in &mut self.cgroups {
            cgroup.seen = false;
        }
        for process in watched.iter() {
            let print = process.memory_cgroup();
            if print == 0 {
                continue;
            }
            match self.cgroups.binary_search_by_key(&print, |c| c.print) {
                Ok(at) => {
                    let cgroup = &mut self.cgroups[at];
                    cgroup.seen = true;
                    cgroup.rule = process.rule();
                }
                Err(_) if self.cgroups.len() == MAX_CGROUPS => {
                    if !std::mem::replace(&mut self.warned_full, true) {
                        tracing::warn!(
                            event = "oom_kills_unfollowed",
                            "watched processes are in more than {MAX_CGROUPS} memory cgroups: the OOM kills in the others are counted with the machine's, under no rule"
                        );
                    }
                }
                Err(at) => {
                    if let Some(cgroup) = self.open(process.pid(), print, process.rule()) {
                        self.cgroups.insert(at, cgroup);
                    }
                }
            }
        }
        let notify = self.notify.as_ref();
        self.cgroups.retain(|cgroup| {
            if let (false, Some(notify), Some(watch)) = (cgroup.seen, notify, cgroup.watch) {
                let _ = inotify::remove_watch(notify, watch);
            }
            cgroup.seen
        });
    }

    /// The memory cgroup of process `pid`, whose fingerprint is `print`, followed from now.
    fn open(&self, pid: i32, print: u64, rule: usize) -> Option<Followed> {
        let mut text = [0u8; 4096];
        let text = self.proc.read_file(pid, "cgroup", &mut text).ok()?;
        let mut name = [0u8; 4096];
        let (file, path) = oom_count_file(text, &mut name)?;
        let count = EventCount::open(file, OOM_KILL).ok();
        // Only cgroup v2's events file tells inotify of its changes.
        let watch = match (&count, &self.notify) {
            (Some(_), Some(notify)) if file.to_bytes().ends_with(b".local") => {
                inotify::add_watch(notify, file, WatchFlags::MODIFY).ok()
            }
            _ => None,
        };
        let mut kept = [0u8; PATH_KEPT];
        let path_len = path.len().min(PATH_KEPT);
        kept[..path_len].copy_from_slice(&path[..path_len]);
        Some(Followed {
            print,
            rule,
            path: kept,
            path_len,
            path_cut: path.len() > PATH_KEPT,
            identity: Identity::from_path(path),
            count,
            seen: true,
            watch,
        })
    }
}

impl Monitor {
    /// Poll mode: says and counts the OOM kills the kernel counted since the last poll.
    pub(super) fn count_oom_kills(&mut self) {
        let Some(counts) = self.oom_counts.as_mut() else {
            return;
        };
        // The machine's first: a kill between the two reads is then matched next time.
        let machine = counts.machine.as_mut().map_or(0, EventCount::rise);
        let mut matched = 0;
        for cgroup in &mut counts.cgroups {
            let Some(killed) = cgroup.count.as_mut().map(EventCount::rise) else {
                continue;
            };
            if killed == 0 {
                continue;
            }
            matched += killed;
            let Some(rule) = self.in_force.rules.all().get(cgroup.rule) else {
                continue;
            };
            self.in_force
                .actions(cgroup.rule)
                .metrics
                .oom_kills
                .inc_by(killed);
            let cgroup_path = Escaped(&cgroup.path[..cgroup.path_len]);
            let cut = if cgroup.path_cut { "…" } else { "" };
            let (container_id, pod_uid) = (cgroup.identity.container(), cgroup.identity.pod());
            tracing::error!(
                event = "oom_kill",
                rule = rule.name.as_str(),
                cgroup = format_args!("{cgroup_path}{cut}"),
                container_id,
                pod_uid,
                count = killed,
                "the kernel's OOM killer took {killed} process(es) in the memory cgroup of processes watched under this rule (polling cannot tell which)"
            );
        }
        if counts.machine.is_none() {
            return;
        }
        counts.unmatched += machine as i64 - matched as i64;
        if counts.unmatched > 0 {
            let killed = counts.unmatched as u64;
            counts.unmatched = 0;
            self.actions.metrics.unwatched_oom_kills.inc_by(killed);
            tracing::error!(
                event = "oom_kill",
                count = killed,
                "the kernel's OOM killer took {killed} process(es) outside the memory cgroups of watched processes"
            );
        }
    }
}
