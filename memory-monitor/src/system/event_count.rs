//! The kernel's counts of memory events, read as they rise: its own OOM kills, for poll mode,
//! which has no tracepoint to hear each one by — machine-wide in `/proc/vmstat` (`oom_kill`),
//! and per memory cgroup in `memory.events.local` (cgroup v2) or `memory.oom_control` (v1),
//! whose `oom_kill` counts the kills of that cgroup's own processes (not its subtree's, so
//! nested cgroups are not counted twice); and the times a cgroup v2's processes were throttled
//! at its `memory.high` (`memory.events`' `high`). A count says how many, never whom.

use std::ffi::CStr;
use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags};

use super::procfs::read_at_start;

/// The longest count file read: `/proc/vmstat` runs to some 6 KiB, the others to a few lines.
const COUNT_TEXT: usize = 16 * 1024;

/// The line of the OOM kills' count.
pub(crate) const OOM_KILL: &[u8] = b"oom_kill";
/// The line of the times processes were throttled at `memory.high`.
pub(crate) const HIGH: &[u8] = b"high";

/// One open count, the line it is on, and the count when last read.
#[derive(Debug)]
pub(crate) struct EventCount {
    file: OwnedFd,
    key: &'static [u8],
    last: u64,
}

impl EventCount {
    /// Opens the count on line `key` of `file`, counting from its value now; an error when
    /// the file cannot be read or has no such line (`oom_kill`: kernels before 4.13).
    pub(crate) fn open(file: &CStr, key: &'static [u8]) -> io::Result<EventCount> {
        let file = rustix::fs::open(file, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        let mut buf = [0u8; COUNT_TEXT];
        let last = parse_count(read_at_start(&file, &mut buf)?, key)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no such count"))?;
        Ok(EventCount { file, key, last })
    }

    /// How much the count rose since the last read (0 when the file cannot be read any more:
    /// its cgroup was removed). Allocates nothing.
    pub(crate) fn rise(&mut self) -> u64 {
        let mut buf = [0u8; COUNT_TEXT];
        let Some(count) = read_at_start(&self.file, &mut buf)
            .ok()
            .and_then(|text| parse_count(text, self.key))
        else {
            return 0;
        };
        let new = count.saturating_sub(self.last);
        self.last = count;
        new
    }
}

/// The count on the `key N` line of a count file's text.
fn parse_count(text: &[u8], key: &[u8]) -> Option<u64> {
    text.split(|&b| b == b'\n').find_map(|line| {
        let count = line.strip_prefix(key)?.strip_prefix(b" ")?;
        std::str::from_utf8(count).ok()?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_the_oom_kill_line_of_each_kind_of_file() {
        let v1 = b"oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_count(v1, OOM_KILL), Some(3));
        let v2 = b"low 0\nhigh 7\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_count(v2, OOM_KILL), Some(2));
        assert_eq!(parse_count(v2, HIGH), Some(7));
        let vmstat = b"nr_free_pages 1\noom_kill_disable 9\noom_kill 41\nnr_unstable 0\n";
        assert_eq!(parse_count(vmstat, OOM_KILL), Some(41));
        assert_eq!(parse_count(b"oom 1\noom_group_kill 1\n", OOM_KILL), None);
        assert_eq!(parse_count(b"highest 1\n", HIGH), None);
    }

    #[test]
    fn a_rise_is_the_increase_since_the_last_read() {
        let path = std::env::temp_dir().join(format!("mm-oom-count-{}", std::process::id()));
        std::fs::write(&path, "oom 1\noom_kill 1\n").unwrap();
        let name = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        let mut count = EventCount::open(&name, OOM_KILL).unwrap();
        assert_eq!(count.rise(), 0);
        std::fs::write(&path, "oom 4\noom_kill 4\n").unwrap();
        assert_eq!(count.rise(), 3);
        assert_eq!(count.rise(), 0);
        std::fs::write(&path, "oom 0\n").unwrap();
        assert_eq!(count.rise(), 0);
        assert!(
            EventCount::open(&name, OOM_KILL).is_err(),
            "no oom_kill line"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
