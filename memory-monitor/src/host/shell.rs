//! Commands the monitor runs (`--exec` hooks, the `cmd:` profile writer) as `sh -c COMMAND`,
//! apart from the monitor: none of its environment, OOM score or raised limits, a process
//! group of their own killed at the timeout, their output kept out of its log.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

use crate::system::procfs::Escaped;

/// `PATH` for a command when the monitor has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs `sh -c command` with `stdin` on its standard input, killing it and everything it
/// started after `timeout`. Its output is not the monitor's log (which would no longer be one
/// event per line): standard output is discarded, and the last line of standard error is told
/// in the error when the command fails.
///
/// The command gets none of what the monitor holds for itself: no capability in any set (the
/// bounding set emptied too, where the monitor may), its environment is `PATH` (the
/// monitor's, or a default) and `env` only (no credentials of the monitor's, such as `AWS_*`),
/// its OOM score adjustment is 0, and its locked-memory and open-files limits are those the
/// monitor started with. It runs in a process group of its own, so the timeout kills its
/// children too (else they would live on, re-parented to init).
pub(crate) fn run_shell(
    command: &str,
    env: &[(&str, String)],
    stdin: &[u8],
    timeout: Duration,
) -> Result<(), String> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let limits = crate::host::rlimits::at_start();
    let mut shell = Command::new("/bin/sh");
    shell
        .args(["-c", command])
        .env_clear()
        .env("PATH", path)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: between fork and exec the closure makes system calls only: it allocates
    // nothing and takes no lock.
    unsafe {
        shell.pre_exec(move || {
            reset_oom_score();
            limits.restore()?;
            crate::host::harden::drop_every_capability()
        });
    }
    let mut child = shell
        .spawn()
        .map_err(|e| format!("cannot run '{command}': {e}"))?;
    // Fed and read on threads of their own, never waited for: a command that does not read
    // an input larger than a pipe holds, writes much, or leaves something behind that keeps
    // its pipes open (escaped from its process group) must not hold up its timeout or this
    // runner. (Not reading its input is not an error.)
    let mut input = child.stdin.take().expect("piped");
    let stdin = stdin.to_vec();
    std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let mut errors = child.stderr.take().expect("piped");
    let (said, last) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = said.send(last_line(&mut errors));
    });
    wait_or_kill(&mut child, command, timeout).map_err(|why| {
        // The group is gone, so its stderr ends now, unless something escaped it.
        match last.recv_timeout(Duration::from_millis(200)).ok().flatten() {
            Some(line) => format!("{why}: {line}"),
            None => why,
        }
    })
}

/// The last non-empty line `stream` gives before it ends (read to its end, keeping at most a
/// few KiB), escaped for a log line.
fn last_line(stream: &mut impl Read) -> Option<String> {
    const KEEP: usize = 4096;
    let mut kept = Vec::new();
    let mut chunk = [0u8; 1024];
    while let Ok(read) = stream.read(&mut chunk) {
        if read == 0 {
            break;
        }
        kept.extend_from_slice(&chunk[..read]);
        if kept.len() > 2 * KEEP {
            kept.drain(..kept.len() - KEEP);
        }
    }
    let line = kept
        .split(|&b| b == b'\n')
        .rev()
        .find(|line| !line.trim_ascii().is_empty())?;
    Some(Escaped(line.trim_ascii()).to_string())
}

/// Waits for `child` to end; after `timeout`, kills its process group.
fn wait_or_kill(
    child: &mut std::process::Child,
    command: &str,
    timeout: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return exited(command, status),
            Ok(None) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                // The whole group: the shell and whatever it started. The shell is not reaped
                // yet, so its PID (the group's ID) cannot have been reused.
                let _ = kill_process_group(Pid::from_child(child), Signal::KILL);
                let _ = child.wait();
                return Err(format!("'{command}' took over {timeout:?}; killed"));
            }
            Err(e) => return Err(format!("cannot wait for '{command}': {e}")),
        }
    }
}

/// Sets the calling process's OOM score adjustment to 0: the monitor's own (-900 by default)
/// is for the monitor, not for what it runs. Raising it needs no privilege; a failure leaves it
/// as it was. System calls only, for a child between fork and exec.
fn reset_oom_score() {
    use rustix::fs::{Mode, OFlags, open};
    if let Ok(file) = open(
        c"/proc/self/oom_score_adj",
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        let _ = rustix::io::write(&file, b"0");
    }
}

fn exited(command: &str, status: ExitStatus) -> Result<(), String> {
    match status.success() {
        true => Ok(()),
        false => Err(format!("'{command}' failed ({status})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shell_command_runs_with_its_environment_and_a_stuck_one_is_killed() {
        let out = std::env::temp_dir().join(format!("mm-shell-{}", std::process::id()));
        let command = format!("echo \"$A $(cat)\" > {}", out.display());
        let env = [("A", "value".to_string())];
        run_shell(&command, &env, b"input", Duration::from_secs(10)).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "value input\n");
        std::fs::remove_file(&out).unwrap();
        assert!(run_shell("exit 3", &[], b"", Duration::from_secs(10)).is_err());
        // What it says on stderr is told, once, as the error's last words.
        let said = run_shell(
            "echo no >&2; echo 'real cause' >&2; exit 1",
            &[],
            b"",
            Duration::from_secs(10),
        );
        assert!(said.unwrap_err().ends_with(": real cause"));
        let stuck = run_shell("sleep 30", &[], b"", Duration::from_millis(100));
        assert!(stuck.unwrap_err().contains("killed"));
        // Stuck without reading an input far larger than a pipe holds: killed all the same.
        let unread = vec![0u8; 4 << 20];
        let stuck = run_shell("sleep 30", &[], &unread, Duration::from_millis(100));
        assert!(stuck.unwrap_err().contains("killed"));
    }

    #[test]
    fn a_command_sees_path_and_its_own_variables_only() {
        // This process has more in its environment than PATH: they must be left out.
        assert!(std::env::vars_os().any(|(name, _)| name != "PATH"));
        let out = std::env::temp_dir().join(format!("mm-shell-env-{}", std::process::id()));
        let env = [("MM_A", "value".to_string())];
        let command = format!("env > {}", out.display());
        run_shell(&command, &env, b"", Duration::from_secs(10)).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        let mut names: Vec<&str> = text
            .lines()
            .filter_map(|line| Some(line.split_once('=')?.0))
            // The shell's own.
            .filter(|name| *name != "PWD")
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["MM_A", "PATH"], "{text}");
    }
}
