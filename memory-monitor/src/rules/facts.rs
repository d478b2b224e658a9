//! What rules ask of one process beyond its name — its user, its cgroup, its command line —
//! read from `/proc` only when a rule asks, and at most once per look (stack buffers: a
//! look allocates nothing).

use crate::matcher::{CommVerdict, Matcher};
use crate::system::cgroup::{self, CgroupPath};
use crate::system::procfs::{self, ProcRoot};

/// One process being looked at under the rules.
pub(crate) struct Facts<'a> {
    proc: &'a ProcRoot,
    pid: i32,
    comm: &'a [u8],
    /// Holds `/proc/PID/cmdline` when a match needs it.
    cmdline_buf: &'a mut [u8],
    /// Its effective uid, once read (`Some(None)`: unreadable).
    uid: Option<Option<u32>>,
    cgroup_buf: [u8; 4096],
    /// `/proc/PID/cgroup`'s length in `cgroup_buf`, once read (`Some(None)`: unreadable).
    cgroup_len: Option<Option<usize>>,
}

impl<'a> Facts<'a> {
    /// Process `pid`, named `comm`; `cmdline_buf` holds its command line when one is read.
    pub(crate) fn new(
        proc: &'a ProcRoot,
        pid: i32,
        comm: &'a [u8],
        cmdline_buf: &'a mut [u8],
    ) -> Self {
        Facts {
            proc,
            pid,
            comm,
            cmdline_buf,
            uid: None,
            cgroup_buf: [0; 4096],
            cgroup_len: None,
        }
    }

    /// Whether `matcher` selects it: by `comm` where that decides, else by its command line.
    pub(crate) fn named(&mut self, matcher: &Matcher) -> bool {
        match matcher.check_comm(self.comm) {
            CommVerdict::Yes => true,
            CommVerdict::No => false,
            CommVerdict::AskCmdline => {
                match self.proc.read_file(self.pid, "cmdline", self.cmdline_buf) {
                    Ok(cmdline) => {
                        let len = cmdline.len();
                        matcher.matches_cmdline(&mut self.cmdline_buf[..len])
                    }
                    Err(_) => false,
                }
            }
        }
    }

    /// Its effective uid, if `/proc/PID/status` can be read.
    pub(crate) fn uid(&mut self) -> Option<u32> {
        let (proc, pid) = (self.proc, self.pid);
        *self.uid.get_or_insert_with(|| read_uid(proc, pid))
    }

    /// Whether its (v2) cgroup is `cgroup` or below it.
    pub(crate) fn in_cgroup(&mut self, cgroup: &CgroupPath) -> bool {
        let (proc, pid, buf) = (self.proc, self.pid, &mut self.cgroup_buf);
        let len = *self
            .cgroup_len
            .get_or_insert_with(|| proc.read_file(pid, "cgroup", buf).ok().map(<[u8]>::len));
        let mut placed = [0u8; 4096];
        let path = len.and_then(|len| cgroup::cgroup_of(&self.cgroup_buf[..len], &mut placed));
        path.is_some_and(|path| cgroup.contains(path))
    }
}

/// Process `pid`'s effective uid, from `/proc/PID/status` (its `Uid:` line comes early).
pub(crate) fn read_uid(proc: &ProcRoot, pid: i32) -> Option<u32> {
    let mut buf = [0u8; 1024];
    let status = proc.read_file(pid, "status", &mut buf).ok()?;
    procfs::parse_status_uid(status)
}
