//! Reading `/proc` without allocating: parsers for `stat`, `statm`, `comm` and `cmdline`, and a
//! handle on `/proc` that lists PIDs with `getdents64` into a caller's buffer and opens per-process
//! files relative to it.
//!
//! Every name read here is bytes: a process may call itself anything but NUL (spaces, `)`,
//! newlines, invalid UTF-8), so nothing assumes text until it is displayed, escaped.

use std::ffi::CStr;
use std::fmt;
use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags, RawDir, SeekFrom};

/// Longest process name the kernel keeps in `comm` (TASK_COMM_LEN minus the NUL).
pub(crate) const COMM_LEN: usize = 15;

/// `PF_KTHREAD` in `/proc/PID/stat` flags: kernel threads have no memory of their own to judge
/// and must never be signalled.
const PF_KTHREAD: u32 = 0x0020_0000;

/// `PF_EXITING`: the task has begun to exit (set before anything else of `do_exit`, so before
/// the kernel reports the process's end).
const PF_EXITING: u32 = 0x0000_0004;

/// A `/proc` file that did not have the expected layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed /proc/PID/{file}: {what}")]
pub struct ParseError {
    /// Which file: `stat`, `statm`.
    pub(crate) file: &'static str,
    /// What was wrong.
    pub(crate) what: &'static str,
}

/// The fields of `/proc/PID/statm` that matter here, in pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statm {
    /// Virtual size in pages: 0 only for a process without memory (exited, not yet reaped).
    pub(crate) size_pages: u64,
    /// Resident set size in pages: the exact figure (`ps` RSS, `status` VmRSS).
    pub(crate) resident_pages: u64,
}

/// Parses `/proc/PID/statm`: `size resident shared text lib data dt`.
pub fn parse_statm(buf: &[u8]) -> Result<Statm, ParseError> {
    let bad = |what| ParseError {
        file: "statm",
        what,
    };
    let mut fields = buf.split(|&b| b == b' ');
    let size = fields.next().and_then(parse_u64);
    let resident = fields.next().ok_or(bad("fewer than 2 fields"))?;
    Ok(Statm {
        size_pages: size.ok_or(bad("size is not a number"))?,
        resident_pages: parse_u64(resident).ok_or(bad("resident is not a number"))?,
    })
}

/// Parses the `Rss:` line of `/proc/PID/smaps_rollup` (in kB) into bytes: the exact resident
/// size, which the kernel counts from the process's page tables when the file is read (where
/// `statm` sums counters that lag or are approximate, see [`crate::accounting`]).
pub(crate) fn parse_rollup_rss(buf: &[u8]) -> Result<u64, ParseError> {
    rollup_bytes(
        buf,
        b"Rss:",
        [
            "no Rss line",
            "Rss is not a number of kB",
            "Rss out of range",
        ],
    )
}

/// Parses the `Swap:` line of `/proc/PID/smaps_rollup` into bytes: what the process has in
/// swap, counted from its page tables like `Rss`.
pub(crate) fn parse_rollup_swap(buf: &[u8]) -> Result<u64, ParseError> {
    rollup_bytes(
        buf,
        b"Swap:",
        [
            "no Swap line",
            "Swap is not a number of kB",
            "Swap out of range",
        ],
    )
}

/// The figure of `smaps_rollup`'s line `key` in bytes; `bad` says what is wrong when it is
/// missing, not a number, or too large.
fn rollup_bytes(buf: &[u8], key: &[u8], bad_: [&'static str; 3]) -> Result<u64, ParseError> {
    let bad = |what| ParseError {
        file: "smaps_rollup",
        what,
    };
    let line = buf
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(key))
        .ok_or(bad(bad_[0]))?;
    let kib = line
        .trim_ascii()
        .strip_suffix(b"kB")
        .map(<[u8]>::trim_ascii)
        .and_then(parse_u64)
        .ok_or(bad(bad_[1]))?;
    kib.checked_mul(1024).ok_or(bad(bad_[2]))
}

/// The fields of `/proc/PID/stat` that matter here. (Its RSS field is not one of them: it
/// comes from the kernel's per-CPU counters and can be a few hundred KiB off; `statm` is exact.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat<'a> {
    /// The name between the parentheses, as stored (may itself contain `)` or spaces).
    pub comm: &'a [u8],
    /// Its process group (0 for kernel threads).
    pub(crate) pgrp: i32,
    /// Kernel `PF_*` flags.
    pub(crate) flags: u32,
    /// When the process started, in clock ticks after boot: with the PID, it names one process
    /// for good (a PID alone may be reused once the process exits).
    pub(crate) start_time: u64,
}

impl Stat<'_> {
    /// Whether this is a kernel thread.
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }

    /// Whether the task has begun to exit. Of a process's leader: the process is ending, or
    /// its leader has ended before its other threads (then it reads as a zombie, also gone).
    pub(crate) fn is_exiting(&self) -> bool {
        self.flags & PF_EXITING != 0
    }
}

/// Parses `/proc/PID/stat`. The name is found between the first `(` and the *last* `)`, since
/// the name itself may contain `)`; all later fields are numbers.
pub fn parse_stat(buf: &[u8]) -> Result<Stat<'_>, ParseError> {
    let bad = |what| ParseError { file: "stat", what };
    let open = buf.iter().position(|&b| b == b'(').ok_or(bad("no '('"))?;
    let close = buf.iter().rposition(|&b| b == b')').ok_or(bad("no ')'"))?;
    if close < open {
        return Err(bad("')' before '('"));
    }
    let comm = &buf[open + 1..close];
    // After ") ": state(3) ppid(4) pgrp(5) session(6) tty(7) tpgid(8) flags(9) ... starttime(22)
    let rest = buf[close + 1..]
        .strip_prefix(b" ")
        .ok_or(bad("no field after name"))?;
    let mut fields = rest.split(|&b| b == b' ');
    if !matches!(fields.next(), Some([_])) {
        return Err(bad("state is not one letter"));
    }
    let pgrp = fields
        .nth(1)
        .and_then(parse_u64)
        .and_then(|pgrp| i32::try_from(pgrp).ok())
        .ok_or(bad("pgrp is not a number"))?;
    let flags = fields
        .nth(3)
        .and_then(parse_u64)
        .ok_or(bad("flags is not a number"))?;
    let start_time = fields
        .nth(12)
        .and_then(parse_u64)
        .ok_or(bad("starttime is not a number"))?;
    Ok(Stat {
        comm,
        pgrp,
        flags: u32::try_from(flags).map_err(|_| bad("flags out of range"))?,
        start_time,
    })
}

/// Resident bytes by kind, from `/proc/PID/status`: the exact split the kernel side starts
/// from when it begins to follow a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResidentParts {
    /// File-backed (`RssFile`).
    pub(crate) file: u64,
    /// Anonymous (`RssAnon`).
    pub(crate) anon: u64,
    /// Shared memory (`RssShmem`).
    pub(crate) shmem: u64,
    /// In swap (`VmSwap`): not resident, but counted by rules that count swap.
    pub(crate) swap: u64,
    /// Its threads (`Threads`): on kernels whose threads cache RSS changes, the kernel side's
    /// margin grows with them.
    pub(crate) threads: u32,
}

/// Parses the `RssAnon`, `RssFile`, `RssShmem` and `VmSwap` lines of `/proc/PID/status` (in kB), and
/// `Threads`. A process without memory (a zombie) has none of the first and reads as zeros.
pub fn parse_status_rss(buf: &[u8]) -> ResidentParts {
    let mut parts = ResidentParts::default();
    for line in buf.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if &line[..colon] == b"Threads" {
            let threads = parse_u64(line[colon + 1..].trim_ascii()).unwrap_or(1);
            parts.threads = u32::try_from(threads).unwrap_or(u32::MAX);
            continue;
        }
        let slot = match &line[..colon] {
            b"RssAnon" => &mut parts.anon,
            b"RssFile" => &mut parts.file,
            b"RssShmem" => &mut parts.shmem,
            b"VmSwap" => &mut parts.swap,
            _ => continue,
        };
        let value = line[colon + 1..].trim_ascii();
        let kib = value
            .strip_suffix(b" kB")
            .map(<[u8]>::trim_ascii)
            .and_then(parse_u64);
        // Saturating: a hostile or corrupt figure must not overflow (a panic in debug builds).
        *slot = kib.unwrap_or(0).saturating_mul(1024);
    }
    parts
}

/// The effective user ID in `/proc/PID/status` (the second figure of its `Uid:` line: the
/// user whose rights the process acts with, as `ps` shows it); `None` when the line is missing.
pub(crate) fn parse_status_uid(buf: &[u8]) -> Option<u32> {
    let line = buf
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"Uid:"))?;
    let effective = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
        .nth(1)?;
    parse_u64(effective).and_then(|uid| u32::try_from(uid).ok())
}

/// The name in `/proc/PID/comm`: the kernel appends exactly one newline, which is removed; a
/// newline inside the name stays.
pub fn parse_comm(buf: &[u8]) -> &[u8] {
    buf.strip_suffix(b"\n").unwrap_or(buf)
}

/// The file name of `argv[0]` in `/proc/PID/cmdline` (NUL-separated arguments): the full
/// program name when `comm` was cut at [`COMM_LEN`] bytes.
pub fn argv0_basename(cmdline: &[u8]) -> &[u8] {
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    match argv0.iter().rposition(|&b| b == b'/') {
        Some(slash) => &argv0[slash + 1..],
        None => argv0,
    }
}

/// A decimal number with nothing else around it (a trailing newline allowed).
fn parse_u64(field: &[u8]) -> Option<u64> {
    let field = field.strip_suffix(b"\n").unwrap_or(field);
    if field.is_empty() || field.len() > 20 {
        return None;
    }
    field.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Displays a process name or command line safely on one log line: valid UTF-8 is kept,
/// control characters and invalid bytes are escaped (`\n`, `\x1b`, `\xff`). NULs between
/// command-line arguments show as spaces.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        let bytes = self.0.strip_suffix(b"\0").unwrap_or(self.0);
        for chunk in bytes.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\0' => f.write_char(' ')?,
                    '\\' => f.write_str("\\\\")?,
                    c if c.is_control() => write!(f, "{}", c.escape_default())?,
                    c => f.write_char(c)?,
                }
            }
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// A process name (`comm`) held inline, so watched-process records need no heap.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Comm {
    bytes: [u8; COMM_LEN],
    len: u8,
}

impl Comm {
    /// Keeps the first [`COMM_LEN`] bytes of `name`, as the kernel does.
    pub(crate) fn new(name: &[u8]) -> Comm {
        let len = name.len().min(COMM_LEN);
        let mut bytes = [0; COMM_LEN];
        bytes[..len].copy_from_slice(&name[..len]);
        Comm {
            bytes,
            len: len as u8,
        }
    }

    /// The name's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Escaped(self.as_bytes()), f)
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Escaped(self.as_bytes()), f)
    }
}

/// An open `/proc` directory: lists process IDs and opens `/proc/PID/…` files relative to
/// itself, building paths on the stack.
#[derive(Debug)]
pub(crate) struct ProcRoot {
    dir: OwnedFd,
}

/// Room for one `getdents64` batch; a caller keeps one and reuses it every scan.
pub(crate) type DirBuffer = Box<[MaybeUninit<u8>]>;

impl ProcRoot {
    /// Opens `/proc`, which must be this process's PID namespace's own: PIDs read in a
    /// `/proc` of another namespace (after `unshare --pid` without `--mount-proc`, or a host's
    /// `/proc` mounted into a container) name other processes than the same PIDs do in the
    /// monitor's signals, so such a `/proc` is refused.
    pub(crate) fn open() -> io::Result<ProcRoot> {
        let dir = rustix::fs::open(
            "/proc",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let me = rustix::process::getpid().as_raw_nonzero().get();
        let seen = rustix::fs::readlinkat(&dir, "self", Vec::new());
        if seen.as_ref().map(|link| link.to_bytes()) != Ok(me.to_string().as_bytes()) {
            let seen = seen.map_or_else(
                |e| e.to_string(),
                |link| link.to_string_lossy().into_owned(),
            );
            return Err(io::Error::other(format!(
                "/proc belongs to another PID namespace (its /proc/self is {seen}; this process is {me} in its own): mount the namespace's own /proc (unshare --mount-proc)"
            )));
        }
        Ok(ProcRoot { dir })
    }

    /// A buffer for [`ProcRoot::for_each_pid`], allocated once.
    pub(crate) fn dir_buffer() -> DirBuffer {
        vec![MaybeUninit::uninit(); 64 * 1024].into_boxed_slice()
    }

    /// The same `/proc` through a descriptor of its own, whose listing does not disturb one
    /// under way through this one's.
    pub(crate) fn reopen(&self) -> io::Result<ProcRoot> {
        let dir = rustix::fs::openat(
            &self.dir,
            c".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(ProcRoot { dir })
    }

    /// Calls `visit` with every process (thread-group) ID now in `/proc`, in ascending order.
    pub(crate) fn for_each_pid(
        &self,
        buf: &mut [MaybeUninit<u8>],
        mut visit: impl FnMut(i32),
    ) -> io::Result<()> {
        rustix::fs::seek(&self.dir, SeekFrom::Start(0))?;
        let mut entries = RawDir::new(&self.dir, buf);
        while let Some(entry) = entries.next() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if let Some(pid) = parse_u64(name).and_then(|pid| i32::try_from(pid).ok()) {
                visit(pid);
            }
        }
        Ok(())
    }

    /// Opens `/proc/PID/<file>` read-only.
    pub(crate) fn open_file(&self, pid: i32, file: &str) -> io::Result<OwnedFd> {
        let mut path = [0u8; 64];
        let mut cursor = &mut path[..];
        write!(cursor, "{pid}/{file}\0")?;
        let path = CStr::from_bytes_until_nul(&path).map_err(|_| io::ErrorKind::InvalidInput)?;
        Ok(rustix::fs::openat(
            &self.dir,
            path,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    /// How many threads process `pid` has: `/proc/PID/task` links one directory per thread
    /// besides its own two (read with one `stat`, no allocation).
    pub(crate) fn threads(&self, pid: i32) -> io::Result<u64> {
        let mut path = [0u8; 32];
        let mut cursor = &mut path[..];
        write!(cursor, "{pid}/task\0")?;
        let path = CStr::from_bytes_until_nul(&path).map_err(|_| io::ErrorKind::InvalidInput)?;
        let stat = rustix::fs::statat(&self.dir, path, rustix::fs::AtFlags::empty())?;
        Ok((stat.st_nlink as u64).saturating_sub(2))
    }

    /// Opens `/proc/PID/<file>`, reads it into `buf` and returns what was read.
    pub(crate) fn read_file<'b>(
        &self,
        pid: i32,
        file: &str,
        buf: &'b mut [u8],
    ) -> io::Result<&'b [u8]> {
        let fd = self.open_file(pid, file)?;
        read_at_start(&fd, buf)
    }

    /// `pid`'s exact resident split, from its `status` (all zeros if it cannot be read).
    pub(crate) fn resident_parts(&self, pid: i32) -> ResidentParts {
        let mut buf = [0u8; 4096];
        self.read_file(pid, "status", &mut buf)
            .map_or_else(|_| ResidentParts::default(), parse_status_rss)
    }
}

/// Reads a `/proc` file from its start into `buf` (a fresh snapshot on every call, so an open
/// fd can be re-read for ever), returning what was read. Longer contents are cut at `buf`'s end.
pub(crate) fn read_at_start(fd: impl AsFd, buf: &mut [u8]) -> io::Result<&[u8]> {
    let len = rustix::io::pread(fd, &mut *buf, 0)?;
    Ok(&buf[..len])
}

/// The size of a memory page: RSS is counted in pages, and pages are not 4096 bytes everywhere.
pub(crate) fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// Total usable RAM in bytes, for limits given as a percentage.
pub(crate) fn total_ram() -> u64 {
    let info = rustix::system::sysinfo();
    info.totalram as u64 * u64::from(info.mem_unit.max(1))
}

/// Whether the process `pidfd` refers to has exited (a pidfd polls readable then). Until it
/// has, its PID is its own: whatever was read by PID in the meantime was this process's.
pub(crate) fn has_exited(pidfd: impl std::os::fd::AsFd) -> bool {
    use rustix::event::{PollFd, PollFlags};
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    matches!(rustix::event::poll(&mut fds, Some(&rustix::time::Timespec::default())), Ok(n) if n > 0)
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (the clock of kernel events' times).
pub(crate) fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_line(comm: &[u8]) -> Vec<u8> {
        let mut line = b"4242 (".to_vec();
        line.extend_from_slice(comm);
        line.extend_from_slice(
            b") S 77 4242 4242 0 -1 4194560 120 0 0 0 1 2 0 0 20 0 1 0 555 9000000 321 \
              18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
        );
        line
    }

    #[test]
    fn statm_gives_resident_pages() {
        assert_eq!(
            parse_statm(b"2345 678 90 12 0 345 0\n"),
            Ok(Statm {
                size_pages: 2345,
                resident_pages: 678
            })
        );
        assert!(parse_statm(b"").is_err());
        assert!(parse_statm(b"2345").is_err());
        assert!(parse_statm(b"2345 -1 0").is_err());
        assert!(parse_statm(b"2345 1x 0").is_err());
        assert!(parse_statm(b"1 99999999999999999999999 0").is_err());
    }

    #[test]
    fn stat_with_hostile_names() {
        let names: [&[u8]; 8] = [
            b"plain",
            b"with space",
            b"a) S 1 2 3",
            b")",
            b"new\nline",
            b"\xff\xfeinvalid",
            b"((nested))",
            b"exactly15bytes!",
        ];
        for name in names {
            let line = stat_line(name);
            let stat = parse_stat(&line).unwrap_or_else(|e| panic!("{:?}: {e}", Escaped(name)));
            assert_eq!(stat.comm, name);
            assert_eq!(stat.flags, 4194560);
            assert_eq!(stat.start_time, 555);
            assert_eq!(stat.pgrp, 4242);
            assert!(!stat.is_kernel_thread());
        }
    }

    #[test]
    fn stat_flags_kernel_threads() {
        let line = b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 2 0 0 \
                     18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 0 0 0 0\n";
        assert!(parse_stat(line).unwrap().is_kernel_thread());
    }

    #[test]
    fn stat_flags_an_exiting_task() {
        // 0x400104: PF_EXITING (0x4) among a user task's usual flags.
        let exiting = b"77 (true) R 1 77 77 0 -1 4194564 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0
";
        let running = b"77 (true) R 1 77 77 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0
";
        assert!(parse_stat(exiting).unwrap().is_exiting());
        assert!(!parse_stat(running).unwrap().is_exiting());
        assert!(!parse_stat(running).unwrap().is_kernel_thread());
    }

    #[test]
    fn stat_rejects_garbage() {
        assert!(parse_stat(b"").is_err());
        assert!(parse_stat(b"12 noparens S 1").is_err());
        assert!(parse_stat(b"12 )( S 1").is_err());
        assert!(parse_stat(b"12 (x)").is_err());
        assert!(parse_stat(b"12 (x) SS 1 2 3 4 5 6").is_err());
        assert!(parse_stat(b"12 (x) S 1 2").is_err());
        assert!(parse_stat(b"12 (x) S 1 2 3 4 5 nope").is_err());
        assert!(parse_stat(b"12 (x) S 1 2 3 4 5 99999999999").is_err());
        // Flags, but no start time.
        assert!(parse_stat(b"12 (x) S 1 2 3 4 5 6 7 8").is_err());
    }

    #[test]
    fn status_gives_the_resident_split() {
        let status = b"Name:\tmy app\nVmRSS:\t   65432 kB\nRssAnon:\t   61440 kB\n\
                       RssFile:\t    3968 kB\nRssShmem:\t      24 kB\nVmSwap:\t  512 kB\n\
                       Threads:\t7\n";
        assert_eq!(
            parse_status_rss(status),
            ResidentParts {
                file: 3968 * 1024,
                anon: 61440 * 1024,
                shmem: 24 * 1024,
                swap: 512 * 1024,
                threads: 7
            }
        );
        assert_eq!(
            parse_status_rss(b"Name:\tzombie\nState:\tZ (zombie)\n"),
            ResidentParts::default()
        );
        assert_eq!(parse_status_rss(b"RssAnon:\tlots kB\n").anon, 0);
    }

    #[test]
    fn smaps_rollup_gives_the_exact_rss() {
        let rollup = b"55d0c5a8a000-7ffd2b5f9000 ---p 00000000 00:00 0                  [rollup]\n\
                       Rss:               50268 kB\nPss:               50100 kB\n\
                       Pss_Anon:          49000 kB\nSwap:               1024 kB\n";
        assert_eq!(parse_rollup_rss(rollup), Ok(50268 * 1024));
        assert_eq!(parse_rollup_swap(rollup), Ok(1024 * 1024));
        assert!(parse_rollup_swap(b"Rss: 4 kB\n").is_err());
        // The Rss line, not the first line with a number, nor Pss.
        assert_eq!(parse_rollup_rss(b"Pss: 1 kB\nRss: 2 kB\n"), Ok(2048));
        assert!(parse_rollup_rss(b"").is_err());
        assert!(parse_rollup_rss(b"Rss: 12\n").is_err());
        assert!(parse_rollup_rss(b"Rss: x kB\n").is_err());
        assert!(parse_rollup_rss(b"Rss: 18446744073709551615 kB\n").is_err());
    }

    #[test]
    fn a_status_figure_too_large_for_bytes_saturates() {
        let huge = b"RssAnon:\t18446744073709551615 kB\nRssFile:\t18014398509481984 kB\n";
        let parts = parse_status_rss(huge);
        assert_eq!((parts.anon, parts.file), (u64::MAX, u64::MAX));
    }

    #[test]
    fn status_gives_the_effective_uid() {
        let status =
            b"Name:\tpasswd\nPPid:\t1\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_status_uid(status), Some(0));
        assert_eq!(parse_status_uid(b"Uid:\t33\t33\t33\t33\n"), Some(33));
        assert_eq!(parse_status_uid(b"Name:\tx\n"), None);
        assert_eq!(parse_status_uid(b"Uid:\t1\t99999999999\n"), None);
    }

    #[test]
    fn comm_strips_exactly_one_newline() {
        assert_eq!(parse_comm(b"my-app\n"), b"my-app");
        assert_eq!(parse_comm(b"odd\n\n"), b"odd\n");
        assert_eq!(parse_comm(b"new\nline\n"), b"new\nline");
        assert_eq!(parse_comm(b"\xff\xfe\n"), b"\xff\xfe");
        assert_eq!(parse_comm(b""), b"");
        assert_eq!(
            Comm::new(b"a-very-long-process-name").as_bytes(),
            b"a-very-long-pro"
        );
        assert_eq!(Comm::new(b"a-very-long-pro").as_bytes().len(), COMM_LEN);
    }

    #[test]
    fn argv0_basename_finds_the_program_name() {
        assert_eq!(
            argv0_basename(b"/usr/bin/my-application-server\0--port\0"),
            b"my-application-server"
        );
        assert_eq!(argv0_basename(b"relative\0"), b"relative");
        assert_eq!(argv0_basename(b"postgres: writer"), b"postgres: writer");
        assert_eq!(argv0_basename(b""), b"");
    }

    #[test]
    fn escaped_names_stay_on_one_line() {
        assert_eq!(Escaped(b"my-app").to_string(), "my-app");
        assert_eq!(Escaped(b"new\nline").to_string(), "new\\nline");
        assert_eq!(Escaped(b"caf\xc3\xa9").to_string(), "caf\u{e9}");
        assert_eq!(Escaped(b"\xff\x1b[31m").to_string(), "\\xff\\u{1b}[31m");
        assert_eq!(Escaped(b"a\0b\0").to_string(), "a b");
        assert_eq!(Escaped(b"back\\slash").to_string(), "back\\\\slash");
    }

    #[test]
    fn reads_this_process() {
        let proc = ProcRoot::open().unwrap();
        let me = std::process::id() as i32;
        let mut buf = [0u8; 4096];
        let statm = parse_statm(proc.read_file(me, "statm", &mut buf).unwrap()).unwrap();
        assert!(statm.resident_pages > 0);
        let rollup = parse_rollup_rss(proc.read_file(me, "smaps_rollup", &mut buf).unwrap());
        assert!(rollup.unwrap() > 0);
        assert!(proc.threads(me).unwrap() >= 1);
        let stat = proc.read_file(me, "stat", &mut buf).unwrap().to_vec();
        let stat = parse_stat(&stat).unwrap();
        assert!(!stat.is_kernel_thread());
        assert!(std::str::from_utf8(stat.comm).is_ok_and(|name| !name.is_empty()));
        let mut dir = ProcRoot::dir_buffer();
        let mut seen_me = false;
        let mut last = 0;
        proc.for_each_pid(&mut dir, |pid| {
            assert!(pid > last, "pids come in ascending order");
            last = pid;
            seen_me |= pid == me;
        })
        .unwrap();
        assert!(seen_me);
        assert!(page_size() >= 4096 && page_size().is_power_of_two());
        assert!(total_ram() > 0);
    }
}
