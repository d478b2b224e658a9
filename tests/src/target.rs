//! The target driver: a running `mm-target` that tests send commands to, and the signals it
//! reports.

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};

use crate::lines::Lines;
use crate::waiting::wait_child;
use crate::{bin, link_to, resident_bytes};

/// A running `mm-target`.
pub struct Target {
    child: Child,
    stdin: ChildStdin,
    out: Lines,
    pid: i32,
    children: Vec<i32>,
    /// Lines of `out.seen` already consumed as command answers.
    answered: usize,
    /// A command was sent without waiting for its answer (see [`Target::start_growing`]):
    /// its answer, if it ever comes, would be taken for the next command's.
    unanswered: bool,
    /// For each process asked for its signals (see [`Target::signals_of`]): the line after
    /// its last marker's report, where the next marker's is looked for.
    flushed: Vec<(i32, usize)>,
}

impl Target {
    /// Starts a target whose process name is `name`.
    pub fn spawn(name: &str) -> Target {
        Target::spawn_with(name, |_| {})
    }

    /// Starts a target named `name`, letting `setup` adjust the command (e.g. another user).
    pub fn spawn_with(name: &str, setup: impl FnOnce(&mut Command)) -> Target {
        Target::spawn_from(&bin("mm-target"), name, setup)
    }

    /// [`Target::spawn_with`], running `program` (a copy of `mm-target` somewhere else).
    pub fn spawn_from(program: &Path, name: &str, setup: impl FnOnce(&mut Command)) -> Target {
        let mut command = Command::new(link_to(program, name));
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        setup(&mut command);
        let mut child = command.spawn().expect("spawn mm-target");
        let stdin = child.stdin.take().expect("stdin");
        let mut out = Lines::new(child.stdout.take().expect("stdout"));
        let (index, ready) = out
            .wait_from(0, |l| l.starts_with("ready"))
            .expect("target did not start");
        let pid = ready.trim_start_matches("ready pid=").parse().expect("pid");
        Target {
            child,
            stdin,
            out,
            pid,
            children: Vec::new(),
            answered: index + 1,
            unanswered: false,
            flushed: Vec::new(),
        }
    }

    /// The target's PID.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn command(&mut self, command: &str, answer: &str) -> String {
        self.send(command);
        let (index, line) = self
            .out
            .wait_from(self.answered, |l| l.starts_with(answer))
            .unwrap_or_else(|| panic!("no answer to {command:?}"));
        self.answered = index + 1;
        line
    }

    fn send(&mut self, command: &str) {
        assert!(
            !self.unanswered,
            "{command:?} sent after a command whose answer was not waited for"
        );
        writeln!(self.stdin, "{command}").expect("write command");
        self.stdin.flush().expect("flush");
    }

    /// Starts growing resident memory by `mib` MiB and returns at once, without waiting for
    /// the target's answer: for a growth past a limit whose signal ends the target (SIGTERM,
    /// or a kill after it), which may then never answer. The test waits for what the monitor
    /// does instead (the signal, the exit, the profile, the log line). No command may follow.
    pub fn start_growing(&mut self, mib: usize) {
        self.send(&format!("grow {mib}"));
        self.unanswered = true;
    }

    /// [`Target::start_growing`], with memory of a memfd (see [`Target::grow_memfd`]).
    pub fn start_growing_memfd(&mut self, mib: usize) {
        self.send(&format!("memfd {mib}"));
        self.unanswered = true;
    }

    /// Grows resident memory by `mib` MiB; returns the RSS reported after.
    pub fn grow(&mut self, mib: usize) -> u64 {
        parse_rss(&self.command(&format!("grow {mib}"), "ok"))
    }

    /// Has the target become a child subreaper and run `script` (one line) with `sh`, not
    /// waited for: a daemon the script starts and leaves becomes the target's child.
    pub fn adopt(&mut self, script: &str) {
        self.command(&format!("adopt {script}"), "ok");
    }

    /// Grows resident memory by `kib` KiB; returns the RSS reported after.
    pub fn grow_kib(&mut self, kib: usize) -> u64 {
        parse_rss(&self.command(&format!("growk {kib}"), "ok"))
    }

    /// Maps `kib` KiB, touches and unmaps them, `times` over; returns the RSS reported after.
    pub fn churn(&mut self, kib: usize, times: usize) -> u64 {
        parse_rss(&self.command(&format!("churn {kib} {times}"), "ok"))
    }

    /// The target's exact resident memory now (`/proc/PID/statm`).
    pub fn rss(&self) -> u64 {
        resident_bytes(&self.pid.to_string())
    }

    /// Gives back `mib` MiB; returns the RSS reported after.
    pub fn shrink(&mut self, mib: usize) -> u64 {
        parse_rss(&self.command(&format!("shrink {mib}"), "ok"))
    }

    /// Gives back `mib` MiB with `madvise(MADV_DONTNEED)`; returns the RSS reported after.
    pub fn madvise(&mut self, mib: usize) -> u64 {
        parse_rss(&self.command(&format!("madvise {mib}"), "ok"))
    }

    /// Grows resident memory by `mib` MiB of a memfd that `smaps` names
    /// `/memfd:mm-target-block`; returns the RSS reported after.
    pub fn grow_memfd(&mut self, mib: usize) -> u64 {
        parse_rss(&self.command(&format!("memfd {mib}"), "ok"))
    }

    /// Maps the first page of the file `path` `n` times, each a mapping of its own holding
    /// that page; returns the RSS reported after.
    pub fn map_file(&mut self, n: usize, path: &Path) -> u64 {
        parse_rss(&self.command(&format!("mapfile {n} {}", path.display()), "ok"))
    }

    /// Fills `mib` MiB of page cache charged to the target's cgroup (clean, reclaimable).
    pub fn cache(&mut self, mib: usize) {
        self.command(&format!("cache {mib}"), "ok");
    }

    /// Maps `mib` MiB without touching it; returns its address in the target.
    pub fn reserve(&mut self, mib: usize) -> usize {
        let line = self.command(&format!("reserve {mib}"), "reserved");
        line.trim_start_matches("reserved addr=")
            .parse()
            .expect("address")
    }

    /// Writes `len` bytes into the target's memory at `addr` from this process
    /// (`process_vm_writev`): the target's RSS grows without the target running.
    pub fn write_into(&self, addr: usize, len: usize) {
        let data = vec![0x77u8; len];
        let local = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: len,
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: len,
        };
        // SAFETY: one local buffer we own, one remote range the target mapped.
        let written = unsafe { libc::process_vm_writev(self.pid, &local, 1, &remote, 1, 0) };
        assert_eq!(
            written,
            len as isize,
            "process_vm_writev: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Renames the process (`comm`).
    pub fn rename(&mut self, name: &str) {
        self.command(&format!("rename {name}"), "ok");
    }

    /// Has the target run its program again in place, named `name` (an exec: same PID, new
    /// memory); waits until the new program is ready.
    pub fn exec(&mut self, name: &str) {
        self.command(&format!("exec {name}"), "ready");
    }

    /// Has the target become user (and group) `uid` after it started, as a worker that drops
    /// root does.
    pub fn become_user(&mut self, uid: u32) {
        self.command(&format!("setuid {uid}"), "ok");
    }

    /// Renames the target to any bytes (the kernel keeps the first 15).
    pub fn rename_bytes(&mut self, name: &[u8]) {
        let hex: String = name.iter().map(|b| format!("{b:02x}")).collect();
        self.command(&format!("rename 0x{hex}"), "ok");
    }

    /// Starts a thread in the target that names itself `name` (the process keeps its name).
    pub fn named_thread(&mut self, name: &str) {
        self.command(&format!("thread {name}"), "ok");
    }

    /// Makes SIGTERM no longer end the target.
    pub fn ignore_term(&mut self) {
        self.command("ignore-term", "ok");
    }

    /// Forks a child sharing the target's memory; returns its PID.
    pub fn fork(&mut self) -> i32 {
        let line = self.command("fork", "child");
        let pid = line
            .trim_start_matches("child pid=")
            .parse()
            .expect("child pid");
        self.children.push(pid);
        pid
    }

    /// Signal numbers received by `pid` (the target or one of its children) up to now, every
    /// one of them: a signal sent before this call and not yet reported is waited for, so that
    /// "no signal" is proven, not read before the report of one in flight.
    ///
    /// How: a marker signal goes to `pid`, and its report is awaited. The target takes its
    /// pending signals lowest number first, and the marker is the highest, so every signal
    /// sent before it is reported before it. A process that has already exited gets no
    /// marker: what it reported before it died is read as it is. Markers are not listed.
    pub fn signals_of(&mut self, pid: i32) -> Vec<i32> {
        let marker = libc::SIGRTMAX();
        if is_alive(pid) {
            let line = format!("signal {marker} pid={pid}");
            let from = self
                .flushed
                .iter()
                .find(|(p, _)| *p == pid)
                .map_or(0, |f| f.1);
            // SAFETY: kill has no memory-safety preconditions.
            let sent = unsafe { libc::kill(pid, marker) } == 0;
            match self.out.wait_from(from, |l| l == line) {
                Some((index, _)) => {
                    self.flushed.retain(|(p, _)| *p != pid);
                    self.flushed.push((pid, index + 1));
                }
                None => assert!(
                    !sent || !is_alive(pid),
                    "process {pid} did not report the marker signal {marker}"
                ),
            }
        }
        let suffix = format!(" pid={pid}");
        self.out
            .drain()
            .iter()
            .filter_map(|l| {
                l.strip_prefix("signal ")?
                    .strip_suffix(&suffix)?
                    .parse()
                    .ok()
            })
            .filter(|&signal| signal != marker)
            .collect()
    }

    /// Signal numbers the target itself received so far.
    pub fn signals(&mut self) -> Vec<i32> {
        self.signals_of(self.pid)
    }

    /// Waits for `pid` (the target or a child) to report `signal`; false if it never does.
    pub fn wait_signal_of(&mut self, pid: i32, signal: i32) -> bool {
        let line = format!("signal {signal} pid={pid}");
        self.out.wait_for(|l| l == line).is_some()
    }

    /// Waits for the target to report `signal`.
    pub fn wait_signal(&mut self, signal: i32) -> bool {
        self.wait_signal_of(self.pid, signal)
    }

    /// Waits until the target has reported `signal` `n` times; false if it never does.
    pub fn wait_signals(&mut self, signal: i32, n: usize) -> bool {
        let line = format!("signal {signal} pid={}", self.pid);
        let mut count = 0;
        self.out
            .wait_from(0, |l| {
                count += usize::from(l == line);
                count >= n
            })
            .is_some()
    }

    /// Waits for the target to end; its exit status.
    pub fn wait_exit(&mut self) -> Option<ExitStatus> {
        wait_child(&mut self.child)
    }

    /// Asks the target to exit and waits for it.
    pub fn exit(mut self) {
        let _ = writeln!(self.stdin, "exit");
        let _ = self.stdin.flush();
        let _ = self.wait_exit();
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        for &child in &self.children {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(child, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `pid` can still take a signal: it exists and is no zombie (state `Z`, or `X`
/// while it is reaped).
pub fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with(['Z', 'X']))
    })
}

fn parse_rss(line: &str) -> u64 {
    line.trim_start_matches("ok rss=").parse().expect("rss")
}
