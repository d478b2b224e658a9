//! The kernel's own OOM kills: what the monitor exists to prevent, so each one is said, with
//! everything known of its victim, whether a rule watched it or not. A watched process killed
//! while its breach was under way says so: the signal came too late to save it, and the
//! operator then knows the margin was too thin.
//!
//! eBPF mode hears of each kill from `oom:mark_victim`, which names the victim and, on newer
//! kernels, its name, user and resident memory by kind at the kill. What the kernel does not
//! say is read from `/proc` while the process is still there (it is being killed: it may
//! already be gone), and said to be unknown when it is not. A kill is rare and ends a process,
//! not a steady state: reading and logging it may allocate.

use std::time::Instant;

use memory_monitor_ebpf::{OomVictim, oom};

use super::Monitor;
use crate::policy::Episode;
use crate::system::container::Identity;
use crate::system::procfs::{self, Comm, Escaped, ProcRoot, ResidentParts};
use crate::system::users::UserName;
use crate::units::Bytes;

/// The longest `/proc/PID/cgroup` read (a hostile process may nest its cgroups deep): the
/// memory hierarchy's line and the v2 line come first on every kernel the monitor runs on.
const CGROUP_TEXT: usize = 4096;

/// What is known of one victim, and where it came from.
#[derive(Debug, Default)]
struct Victim {
    name: Option<Comm>,
    uid: Option<u32>,
    /// Resident memory at the kill (or as `/proc` last showed it), and who said it.
    rss: Option<(ResidentParts, &'static str)>,
    cgroup: Option<Vec<u8>>,
    identity: Identity,
}

impl Victim {
    /// What the kernel said of `victim`, completed from `/proc/PID` where it is still there.
    fn read(pid: i32, victim: &OomVictim) -> Victim {
        let proc = ProcRoot::open().ok();
        let mut buf = [0u8; CGROUP_TEXT];
        let read = |file: &str, buf: &mut [u8; CGROUP_TEXT]| -> Option<Vec<u8>> {
            let proc = proc.as_ref()?;
            proc.read_file(pid, file, buf).ok().map(<[u8]>::to_vec)
        };
        let status = read("status", &mut buf);
        let name = match victim.known & oom::KNOWS_COMM {
            0 => read("comm", &mut buf).map(|text| Comm::new(procfs::parse_comm(&text))),
            _ => {
                let end = victim.comm.iter().position(|&b| b == 0).unwrap_or(16);
                Some(Comm::new(&victim.comm[..end]))
            }
        };
        let uid = match victim.known & oom::KNOWS_UID {
            0 => status.as_deref().and_then(procfs::parse_status_uid),
            _ => Some(victim.uid),
        };
        // Once it is exiting, what `/proc` shows is what its exit (or the OOM reaper) has
        // left, not what it held at the kill.
        let exiting = read("stat", &mut buf)
            .is_some_and(|stat| procfs::parse_stat(&stat).is_ok_and(|stat| stat.is_exiting()));
        let rss = match victim.known & oom::KNOWS_RSS {
            0 => status
                .filter(|text| !exiting && text.windows(8).any(|w| w == b"RssAnon:"))
                .map(|text| (procfs::parse_status_rss(&text), "proc")),
            _ => {
                let parts = ResidentParts {
                    anon: victim.anon_kib.saturating_mul(1024),
                    file: victim.file_kib.saturating_mul(1024),
                    shmem: victim.shmem_kib.saturating_mul(1024),
                    ..ResidentParts::default()
                };
                Some((parts, "kernel"))
            }
        };
        let cgroups = read("cgroup", &mut buf).unwrap_or_default();
        Victim {
            name,
            uid,
            rss,
            cgroup: crate::system::cgroup::memory_path_of(&cgroups, exiting).map(<[u8]>::to_vec),
            identity: Identity::from_proc_cgroup(&cgroups),
        }
    }
}

impl Monitor {
    /// The kernel's OOM killer chose `pid` (eBPF mode), reported at `at_ns`; `victim` is what
    /// the kernel said of it. Logs it and counts it under the rule that watched it.
    pub(super) fn oom_killed(&mut self, pid: i32, victim: &OomVictim, at_ns: u64) {
        let mut known = Victim::read(pid, victim);
        // Only a process admitted before the report is the victim, not a newcomer on its PID.
        let watched = self
            .watch
            .list()
            .get(pid)
            .filter(|watched| watched.was_watched_at(at_ns));
        let mut rule = None;
        let mut breach_ms = None;
        if let Some(watched) = watched {
            let index = watched.rule();
            rule = Some(self.in_force.rules.get(index).name.clone());
            self.in_force.actions(index).metrics.oom_kills.inc();
            known.name = known.name.or(Some(*watched.comm()));
            known.uid = known.uid.or(Some(watched.uid()));
            // Its identity as read at admission, when its cgroup can no longer be read.
            if known.cgroup.is_none() {
                known.identity = *watched.identity();
            }
            if let Episode::Over { since, .. } = watched.episode {
                breach_ms =
                    Some(Instant::now().saturating_duration_since(since).as_millis() as u64);
            }
        } else {
            self.actions.metrics.unwatched_oom_kills.inc();
        }
        let name = known
            .name
            .map_or_else(|| "unknown".to_string(), |n| n.to_string());
        let user = known
            .uid
            .map_or_else(|| "unknown".to_string(), |uid| UserName(uid).to_string());
        let (container_id, pod_uid) = (known.identity.container(), known.identity.pod());
        let cgroup = known
            .cgroup
            .as_deref()
            .map_or_else(|| "unknown".to_string(), |c| Escaped(c).to_string());
        let size = |part: fn(&ResidentParts) -> u64| {
            known.rss.map_or_else(
                || "unknown".to_string(),
                |(parts, _)| Bytes(part(&parts)).to_string(),
            )
        };
        let (anon, file, shmem) = (size(|p| p.anon), size(|p| p.file), size(|p| p.shmem));
        let rss_bytes = known.rss.map(|(p, _)| p.anon + p.file + p.shmem);
        let rss_from = known.rss.map_or("unknown", |(_, from)| from);
        let (uid, rule) = (known.uid, rule.as_deref());
        match breach_ms {
            Some(breach_ms) => {
                tracing::error!(event = "oom_kill", rule, pid, %name, uid, %user, container_id, pod_uid, %cgroup, %anon, %file, %shmem, rss_bytes, rss_from, breach_ms,
                "the kernel's OOM killer took it during its breach, {breach_ms} ms after the monitor signalled it: the limit leaves too thin a margin")
            }
            None => {
                tracing::error!(event = "oom_kill", rule, pid, %name, uid, %user, container_id, pod_uid, %cgroup, %anon, %file, %shmem, rss_bytes, rss_from,
                "the kernel's OOM killer took it")
            }
        }
    }
}
