//! The monitor driver: the real `memory-monitor` binary started with a test's arguments and
//! rules file, its log read line by line.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::lines::Lines;
use crate::waiting::wait_child;
use crate::{Target, bin, unique_name, wait_until};

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

    /// Waits until the monitor in `mode` has handled every change made before this call, so
    /// that "not signalled" can be read after it. In poll mode a cycle may have read a process
    /// just before it changed: this waits for two more cycles (`-v`'s "checked" lines), the
    /// second begun after the call. In eBPF mode the kernel's reports are handled in the order
    /// they were made, so the breach of a process changed later, once awaited, proves the
    /// earlier changes handled, and this waits for nothing more.
    pub fn expect_caught_up(&mut self, mode: &str) {
        if mode == "poll" {
            self.expect_more("checked", 2);
        }
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

    /// Stops the monitor (SIGSTOP) and waits until every thread of it has stopped, so that
    /// what the test does next happens while the monitor cannot run. [`Monitor::thaw`] lets
    /// it go on.
    pub fn freeze(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.pid(), libc::SIGSTOP) };
        let tasks = format!("/proc/{}/task", self.pid());
        let stopped = wait_until(|| {
            std::fs::read_dir(&tasks).is_ok_and(|tasks| {
                tasks.flatten().all(|task| {
                    std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                        stat.rsplit_once(") ")
                            .is_some_and(|(_, rest)| rest.starts_with(['T', 't']))
                    })
                })
            })
        });
        assert!(
            stopped,
            "the monitor did not stop; log:\n{}",
            self.log_text()
        );
    }

    /// Lets a monitor stopped by [`Monitor::freeze`] go on (SIGCONT).
    pub fn thaw(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.pid(), libc::SIGCONT) };
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

/// Runs the monitor to completion with `args`: exit status and stderr. Meant for arguments
/// the monitor refuses: if it runs instead, it is killed once [`patience`](crate::patience)
/// runs out and the test fails, rather than hanging while a live monitor acts on the host.
pub fn run_monitor(args: &[&str]) -> (ExitStatus, String) {
    use std::io::Read as _;
    let mut child = Command::new(bin("memory-monitor"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run memory-monitor");
    // Read on a thread, so that a monitor that keeps logging cannot fill the pipe and stall.
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });
    let Some(status) = wait_child(&mut child) else {
        let _ = child.kill();
        let _ = child.wait();
        let stderr = reader.join().unwrap_or_default();
        panic!(
            "memory-monitor {args:?} still ran after its patience, where it should have exited: {stderr}"
        );
    };
    (status, reader.join().expect("stderr reader"))
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
