//! The kernel's counts of its own OOM kills, for poll mode, which has no tracepoint to hear
//! each one by: machine-wide in `/proc/vmstat` (`oom_kill`), and per memory cgroup in
//! `memory.events.local` (cgroup v2) or `memory.oom_control` (v1), whose `oom_kill` counts the
//! kills of that cgroup's own processes (not its subtree's, so nested cgroups are not counted
//! twice). A count says how many were killed, never whom.

use std::ffi::CStr;
use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags};

use super::procfs::read_at_start;

/// The longest count file read: `/proc/vmstat` runs to some 6 KiB, the others to a few lines.
const COUNT_TEXT: usize = 16 * 1024;

/// One open count of OOM kills, and the count when last read.
#[derive(Debug)]
pub(crate) struct OomCount {
    file: OwnedFd,
    last: u64,
}

impl OomCount {
    /// Opens the count in `file`, counting from its value now; an error when the file cannot
    /// be read or has no `oom_kill` line (kernels before 4.13).
    pub(crate) fn open(file: &CStr) -> io::Result<OomCount> {
        let file = rustix::fs::open(file, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        let mut buf = [0u8; COUNT_TEXT];
        let last = parse_oom_kill(read_at_start(&file, &mut buf)?)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no oom_kill count"))?;
        Ok(OomCount { file, last })
    }

    /// The kills counted since the last read (0 when the file cannot be read any more: its
    /// cgroup was removed). Allocates nothing.
    pub(crate) fn new_kills(&mut self) -> u64 {
        let mut buf = [0u8; COUNT_TEXT];
        let Some(count) = read_at_start(&self.file, &mut buf)
            .ok()
            .and_then(parse_oom_kill)
        else {
            return 0;
        };
        let new = count.saturating_sub(self.last);
        self.last = count;
        new
    }
}

/// The `oom_kill N` line's count in a count file's text.
fn parse_oom_kill(text: &[u8]) -> Option<u64> {
    text.split(|&b| b == b'\n').find_map(|line| {
        let count = line.strip_prefix(b"oom_kill ")?;
        std::str::from_utf8(count).ok()?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_the_oom_kill_line_of_each_kind_of_file() {
        let v1 = b"oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_oom_kill(v1), Some(3));
        let v2 = b"low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v2), Some(2));
        let vmstat = b"nr_free_pages 1\noom_kill_disable 9\noom_kill 41\nnr_unstable 0\n";
        assert_eq!(parse_oom_kill(vmstat), Some(41));
        assert_eq!(parse_oom_kill(b"oom 1\noom_group_kill 1\n"), None);
    }

    #[test]
    fn new_kills_are_the_increase_since_the_last_read() {
        let path = std::env::temp_dir().join(format!("mm-oom-count-{}", std::process::id()));
        std::fs::write(&path, "oom 1\noom_kill 1\n").unwrap();
        let name = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        let mut count = OomCount::open(&name).unwrap();
        assert_eq!(count.new_kills(), 0);
        std::fs::write(&path, "oom 4\noom_kill 4\n").unwrap();
        assert_eq!(count.new_kills(), 3);
        assert_eq!(count.new_kills(), 0);
        std::fs::write(&path, "oom 0\n").unwrap();
        assert_eq!(count.new_kills(), 0);
        assert!(OomCount::open(&name).is_err(), "no oom_kill line");
        std::fs::remove_file(&path).unwrap();
    }
}
