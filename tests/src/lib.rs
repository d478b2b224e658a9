//! Test harness: start real `mm-target` processes and the real `memory-monitor` binary, send
//! them commands, and wait for what they report.
//!
//! Waits are bounded (a test must end) but never asserted on: a test fails because something
//! did or did not happen, never because it took a certain time.

pub mod cgroup;
pub mod counting;
pub mod exact;
pub mod gate;
pub mod scrape;
pub mod servers;
pub mod shipped;
pub mod swap;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// The longest any single wait may take before the test gives up: 30 s, and three times that
/// in the emulated guests of other kernels (`cargo xtask vmtest` sets `MEMORY_MONITOR_VMTEST`),
/// which run everything many times slower. A bound so that a broken build fails instead of
/// hanging, never a timing assertion.
pub fn patience() -> Duration {
    match std::env::var_os("MEMORY_MONITOR_VMTEST") {
        Some(_) => Duration::from_secs(90),
        None => Duration::from_secs(30),
    }
}

/// A directory with the workspace's built binaries (`target/<profile>`), found from this test
/// executable's location (`target/<profile>/deps/…`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("profile dir")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// The path of a workspace binary, which must have been built (`cargo xtask test` does).
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds it first",
        path.display()
    );
    path
}

/// A process name no other test (or run) uses: `prefix` plus this test process's PID and a
/// counter, in base 36 so they stay short. The whole is at most 12 bytes, which leaves tests
/// room for a suffix of up to 3 (`{name}ok`, `{name}r7`) within the kernel's 15-byte `comm`:
/// a suffix cut off by the kernel would make two targets one name. The prefix is cut short
/// where needed, since what makes the name unique is its end.
pub fn unique_name(prefix: &str) -> String {
    const MAX: usize = 12;
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let unique = format!("{}x{}", base36(std::process::id()), base36(n));
    let room = MAX.saturating_sub(unique.len());
    assert!(room >= 3, "{unique} leaves no room for a prefix");
    let prefix = &prefix[..prefix.len().min(room)];
    format!("{prefix}{unique}")
}

fn base36(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit(n % 36, 36).unwrap());
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

/// A directory for links named after targets, readable by every user (the unprivileged tests
/// run targets as `nobody`).
fn link_dir() -> PathBuf {
    // The PID namespace too: test programs run as PID 1 of namespaces of their own, side by side.
    let namespace = std::fs::read_link("/proc/self/ns/pid")
        .map(|link| {
            link.to_string_lossy()
                .trim_matches(|c: char| !c.is_ascii_digit())
                .to_string()
        })
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("mm-tests-{}-{namespace}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create link dir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// A rules file in the temporary directory, removed when dropped.
pub struct RulesFile(PathBuf);

impl RulesFile {
    /// Writes `text` into a new rules file named after `label`.
    pub fn new(label: &str, text: &str) -> RulesFile {
        let path = std::env::temp_dir().join(format!("{}.toml", unique_name(label)));
        std::fs::write(&path, text).unwrap();
        RulesFile(path)
    }

    /// Replaces its text.
    pub fn rewrite(&self, text: &str) {
        // Written aside and renamed, as editors save.
        let aside = self.0.with_extension("new");
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, &self.0).unwrap();
    }

    /// Its path.
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for RulesFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The one error line of a monitor run that failed (exit status 1), which must say every one
/// of `parts`; panics with the whole log otherwise.
pub fn the_one_error(output: &std::process::Output, parts: &[&str]) -> String {
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one error line: {log}");
    assert!(
        parts.iter().all(|part| errors[0].contains(part)),
        "{parts:?}: {log}"
    );
    errors[0].to_string()
}

/// A link named `name` to the program `target`: run through it, a process is named `name`.
pub fn link_to(target: impl AsRef<Path>, name: &str) -> PathBuf {
    let link = link_dir().join(name);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(target, &link).expect("link");
    link
}

/// Lines a child process writes, collected by a thread.
struct Lines {
    rx: Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn new(stream: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Looks at lines from index `start` on, collecting more as they come, until one satisfies
    /// `want` (returned with its index) or [`patience`] passes (None).
    fn wait_from(
        &mut self,
        start: usize,
        mut want: impl FnMut(&str) -> bool,
    ) -> Option<(usize, String)> {
        let deadline = Instant::now() + patience();
        let mut next = start;
        loop {
            while next < self.seen.len() {
                if want(&self.seen[next]) {
                    return Some((next, self.seen[next].clone()));
                }
                next += 1;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Waits for any line, old or new, that satisfies `want`.
    fn wait_for(&mut self, want: impl FnMut(&str) -> bool) -> Option<String> {
        self.wait_from(0, want).map(|(_, line)| line)
    }

    /// Takes in every line already written, without waiting.
    fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }
}

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

    /// Grows resident memory by `kib` KiB; returns the RSS reported after.
    pub fn grow_kib(&mut self, kib: usize) -> u64 {
        parse_rss(&self.command(&format!("growk {kib}"), "ok"))
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

    /// Signal numbers received so far by `pid` (the target or one of its children).
    pub fn signals_of(&mut self, pid: i32) -> Vec<i32> {
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

fn parse_rss(line: &str) -> u64 {
    line.trim_start_matches("ok rss=").parse().expect("rss")
}

fn wait_child(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + patience();
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// A running `memory-monitor`, its log (stderr) collected line by line.
pub struct Monitor {
    child: Child,
    log: Lines,
}

impl Monitor {
    /// Starts the monitor with `args`.
    pub fn start(args: &[&str]) -> Monitor {
        Monitor::start_with(args, |_| {})
    }

    /// Starts the monitor in `mode` with the rules file `config` (and `more` arguments),
    /// polling every 100 ms when it polls, logging each check (`-v`), and waits until its
    /// first look at every process has ended start-up.
    pub fn start_rules(mode: &str, config: &str, more: &[&str]) -> Monitor {
        let mut args = vec!["--mode", mode, "-i", "100ms", "-v", "--config", config];
        args.extend_from_slice(more);
        let mut monitor = Monitor::start(&args);
        monitor.expect_log(&["watching", &format!("mode={mode}")]);
        monitor.expect_log(&["checked"]);
        monitor
    }

    /// Starts the monitor with `args` under `wrapper` (a command that runs the rest of its
    /// command line, like `unshare … --` or `setpriv … --`).
    pub fn start_wrapped(wrapper: &[&str], args: &[&str]) -> Monitor {
        Monitor::start_with(args, |command| {
            let program = command.get_program().to_owned();
            let mut wrapped = Command::new(wrapper[0]);
            wrapped.args(&wrapper[1..]).arg(program).args(args);
            *command = wrapped;
        })
    }

    /// Starts the monitor with `args`, letting `setup` adjust the command.
    pub fn start_with(args: &[&str], setup: impl FnOnce(&mut Command)) -> Monitor {
        let mut command = Command::new(bin("memory-monitor"));
        command.args(args);
        setup(&mut command);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn memory-monitor");
        let log = Lines::new(child.stderr.take().expect("stderr"));
        Monitor { child, log }
    }

    /// Waits for a log line containing every one of `parts`; panics with the log if none comes.
    pub fn expect_log(&mut self, parts: &[&str]) -> String {
        match self.log.wait_for(|l| parts.iter().all(|p| l.contains(p))) {
            Some(line) => line,
            None => panic!(
                "no log line with {parts:?}; log so far:\n{}",
                self.log_text()
            ),
        }
    }

    /// Waits until the monitor has logged `n` more lines containing `part` (e.g. `n` more
    /// poll cycles with `-v`'s "checked" lines).
    pub fn expect_more(&mut self, part: &str, n: usize) {
        let mut count = 0;
        let start = self.log.drain().len();
        let found = self.log.wait_from(start, |l| {
            count += usize::from(l.contains(part));
            count >= n
        });
        assert!(
            found.is_some(),
            "fewer than {n} more {part:?} lines; log:\n{}",
            self.log_text()
        );
    }

    /// Waits until `n` lines in all (old ones included) contain every one of `parts`.
    pub fn expect_count(&mut self, parts: &[&str], n: usize) {
        let mut count = 0;
        let found = self.log.wait_from(0, |l| {
            count += usize::from(parts.iter().all(|p| l.contains(p)));
            count >= n
        });
        assert!(
            found.is_some(),
            "fewer than {n} {parts:?} lines; log:\n{}",
            self.log_text()
        );
    }

    /// How many lines logged so far contain every one of `parts`.
    pub fn count(&mut self, parts: &[&str]) -> usize {
        self.log
            .drain()
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    /// Everything logged so far.
    pub fn log_text(&mut self) -> String {
        self.log.drain().join("\n")
    }

    /// The monitor's PID.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends SIGTERM and waits for the monitor to exit; its exit status.
    pub fn stop(mut self) -> ExitStatus {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        self.wait()
    }

    /// Waits for the monitor to exit on its own.
    pub fn wait(&mut self) -> ExitStatus {
        wait_child(&mut self.child)
            .unwrap_or_else(|| panic!("monitor did not exit; log:\n{}", self.log_text()))
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The monitor's arguments for a test breach: in `mode`, checked every 100 ms (poll mode),
/// SIGUSR1 once per breach over 32 MiB; then `rest`.
pub fn usr1_over_32m<'a>(mode: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--mode", mode, "-i", "100ms", "-m", "32M", "-s", "USR1", "--repeat", "never",
    ];
    args.extend_from_slice(rest);
    args
}

/// A field of a `/proc/.../status` (or `smaps`) text: what follows `name:`, trimmed.
pub fn status_field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

/// A capability set (`CapEff`, `CapBnd`, …) of a `/proc/.../status` text.
pub fn capability_set(status: &str, set: &str) -> u64 {
    u64::from_str_radix(status_field(status, set), 16).unwrap()
}

/// A `N kB` field of a `/proc/.../status` or `smaps` text, in bytes.
pub fn kib_field(text: &str, name: &str) -> u64 {
    let kib = status_field(text, name).trim_end_matches(" kB");
    kib.parse::<u64>().unwrap() << 10
}

/// The BPF map named `name` that process `pid` holds open, opened by its ID.
pub fn bpf_map_of(pid: i32, name: &str) -> aya::maps::MapData {
    let id = bpf_objects_of(pid)
        .into_iter()
        .filter(|(kind, _)| kind == "map_id")
        .find(|(_, id)| {
            aya::maps::MapInfo::from_id(*id).is_ok_and(|info| info.name_as_str() == Some(name))
        })
        .map(|(_, id)| id)
        .unwrap_or_else(|| panic!("process {pid} holds no map {name}"));
    aya::maps::MapData::from_id(id).unwrap_or_else(|e| panic!("open {name}: {e}"))
}

/// The BPF objects (program, link and map IDs) a process holds open, from its fdinfo.
pub fn bpf_objects_of(pid: i32) -> Vec<(String, u32)> {
    let mut objects = Vec::new();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return objects;
    };
    for entry in entries.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in info.lines() {
            for kind in ["prog_id", "link_id", "map_id"] {
                if let Some(id) = line.strip_prefix(kind).and_then(|r| r.strip_prefix(':'))
                    && let Ok(id) = id.trim().parse()
                {
                    objects.push((kind.to_string(), id));
                }
            }
        }
    }
    objects.sort();
    objects.dedup();
    objects
}

/// Runs the monitor to completion with `args`: exit status and stderr.
pub fn run_monitor(args: &[&str]) -> (ExitStatus, String) {
    let output = Command::new(bin("memory-monitor"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run memory-monitor");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `go tool pprof -top` of `profile` by the sample type `index` (`rss`, `growth`, …).
pub fn pprof_top(profile: &Path, index: &str) -> String {
    let output = Command::new("go")
        .args(["tool", "pprof", "-top", "-symbolize=none"])
        .arg(format!("-sample_index={index}"))
        .arg(profile)
        .output()
        .expect("go tool pprof (cargo xtask setup installs Debian's golang-go)");
    assert!(
        output.status.success(),
        "pprof failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What `go tool pprof -top` (by resident bytes) lists first for `profile`.
pub fn pprof_top_entry(profile: &Path) -> String {
    let text = pprof_top(profile, "rss");
    // The table's first row follows its header ("flat  flat%  sum% ...").
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .nth(1)
        .unwrap_or_else(|| panic!("no rows in:\n{text}"))
        .to_string()
}

/// The files in `dir` whose names end with `suffix`, sorted; none when `dir` is missing.
pub fn files_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|path| path.to_string_lossy().ends_with(suffix));
    files.sort();
    files
}

/// Every signal, as a set.
pub fn all_signals() -> libc::sigset_t {
    // SAFETY: sigfillset initialises the set it is given.
    unsafe {
        let mut set = std::mem::zeroed();
        libc::sigfillset(&mut set);
        set
    }
}

/// Blocks every signal in this thread (and so in threads and children made after): the test
/// programs take them one by one, or not at all.
pub fn block_all_signals() {
    let set = all_signals();
    // SAFETY: a valid set; blocking is always allowed (SIGKILL/SIGSTOP are ignored by the call).
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// A new private anonymous read-write mapping of `len` bytes, untouched (for the test
/// programs that grow their memory).
pub fn map_anonymous(len: usize) -> *mut u8 {
    // SAFETY: a fresh mapping, overlapping nothing.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(ptr, libc::MAP_FAILED, "mmap");
    ptr.cast()
}

/// The exact resident memory (`/proc/PROCESS/statm`) of `process` (a PID, or `self`), in
/// bytes; 0 when it cannot be read.
pub fn resident_bytes(process: &str) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{process}/statm")).unwrap_or_default();
    let pages: u64 = statm
        .split(' ')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// Waits until `done` holds, checking every 20 ms; false if it still does not after 20 s (a
/// bound so that a broken build fails instead of hanging, never a timing assertion).
pub fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `target`, which ignores SIGTERM, is killed by `monitor`'s `--kill-after`, after the
/// breach's SIGTERM was sent, once. The SIGKILL may come before the target has reported the
/// SIGTERM it ignored: what is awaited is its death, then what the monitor says it sent.
pub fn assert_killed_after_its_term(target: &mut Target, monitor: &mut Monitor) {
    use std::os::unix::process::ExitStatusExt as _;
    let status = target.wait_exit().expect("the target is killed");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{}",
        monitor.log_text()
    );
    let pid = format!("pid={}", target.pid());
    monitor.expect_log(&["after --kill-after", &pid, "signal=SIGKILL", "result=sent"]);
    assert_eq!(
        monitor.count(&[r#"event="breach""#, &pid, "signal=SIGTERM", "result=sent"]),
        1,
        "{}",
        monitor.log_text()
    );
}

#[cfg(test)]
mod tests {
    use super::unique_name;

    #[test]
    fn unique_names_differ_and_leave_room_for_a_suffix() {
        let names: std::collections::HashSet<_> =
            (0..2000).map(|_| unique_name("a-long-prefix")).collect();
        assert_eq!(names.len(), 2000);
        assert!(names.iter().all(|name| name.len() + 3 <= 15), "{names:?}");
    }
}
