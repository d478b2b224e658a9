//! Whom the monitor never signals, whatever the rules say: PID 1, itself, its parent, kernel
//! threads, and processes outside its PID namespace's view. Checked with a rule that matches
//! every name and a limit everything is over (`--dry-run`: nothing is sent either way).

use std::process::Command;

use memory_monitor_tests::{bin, link_to, the_one_error, unique_name, wait_until};

const EVERYTHING: [&str; 8] = [
    "--once",
    "--dry-run",
    "--mode",
    "poll",
    "-m",
    "1B",
    "--match",
    "regex",
];

/// The PIDs in the "over the limit" lines of `log`.
fn named(log: &str) -> Vec<i32> {
    log.lines()
        .filter(|line| line.contains("over the limit"))
        .filter_map(|line| {
            let pid = line.split("pid=").nth(1)?.split(' ').next()?;
            pid.parse().ok()
        })
        .collect()
}

fn is_kernel_thread(pid: i32) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let flags: u64 = after.split(' ').nth(6).unwrap().parse().unwrap();
    flags & PF_KTHREAD != 0
}

#[test]
fn pid_1_itself_its_parent_and_kernel_threads_are_never_named() {
    let child = Command::new(bin("memory-monitor"))
        .args(EVERYTHING)
        .arg(".")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let me = child.id() as i32;
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "something is over 1 byte: {log}"
    );
    let pids = named(&log);
    assert!(!pids.is_empty(), "{log}");
    let parent = std::process::id() as i32;
    for pid in &pids {
        assert!(*pid > 1, "PID 1 named: {log}");
        assert_ne!(*pid, me, "the monitor named itself: {log}");
        assert_ne!(*pid, parent, "the monitor named its parent: {log}");
        assert!(!is_kernel_thread(*pid), "kernel thread {pid} named: {log}");
    }
    // Kernel threads exist (kthreadd is PID 2) and match the pattern by name.
    assert!(is_kernel_thread(2));
}

#[test]
#[ignore = "needs root"]
fn processes_outside_its_pid_namespace_are_never_named() {
    // In a new PID namespace: the monitor (its first process, via exec) and one `sleep`.
    let script = format!(
        "sleep 30 & exec {} {} .",
        bin("memory-monitor").display(),
        EVERYTHING.join(" ")
    );
    let output = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", &script])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let over: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("over the limit"))
        .collect();
    assert_eq!(over.len(), 1, "only the namespace's sleep: {log}");
    assert!(over[0].contains("name=sleep"), "{log}");
}

#[test]
#[ignore = "needs root"]
fn a_proc_of_another_pid_namespace_is_refused() {
    // A new PID namespace that still sees the host's /proc: its PIDs are not the monitor's.
    let output = Command::new("unshare")
        .args(["--pid", "--fork"])
        .arg(bin("memory-monitor"))
        .args(["--mode", "poll", "-m", "32", "anything"])
        .output()
        .unwrap();
    the_one_error(&output, &["/proc belongs to another PID namespace"]);
}

#[test]
#[ignore = "needs root"]
fn in_ebpf_mode_its_parent_is_never_named_even_when_it_execs_into_a_matching_name() {
    // The monitor's parent, a shell, waits until the monitor is running, then starts a child
    // that execs a matching program (the control: it must be named) and execs one itself (it
    // must not be: the kernel side sees the exec of the monitor's parent).
    let dir = std::env::temp_dir();
    let tag = unique_name("mmn-");
    let sibling = link_to("/bin/sleep", &format!("{tag}s"));
    let parent = link_to("/bin/sleep", &format!("{tag}p"));
    let log_path = dir.join(format!("{tag}.log"));
    let pid_path = dir.join(format!("{tag}.pid"));
    let script = format!(
        "{monitor} --mode ebpf --dry-run -v -m 1B --match regex '^{tag}' 2>{log} & echo $! >{pid}; \
         until grep -q 'start-up done' {log}; do sleep 0.05; done; \
         ({sibling} 1 &); exec {parent} 1",
        monitor = bin("memory-monitor").display(),
        log = log_path.display(),
        pid = pid_path.display(),
        sibling = sibling.display(),
        parent = parent.display(),
    );
    let mut shell = Command::new("sh").args(["-c", &script]).spawn().unwrap();
    let parent_pid = shell.id();
    assert!(shell.wait().unwrap().success());
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let named_sibling = wait_until(|| log().contains(&format!("name={tag}s")));
    let monitor: i32 = std::fs::read_to_string(&pid_path)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(monitor, libc::SIGTERM) };
    assert!(wait_until(|| log().contains("event=\"stop\"")), "{}", log());
    let log = log();
    let _ = std::fs::remove_file(&log_path);
    let _ = std::fs::remove_file(&pid_path);
    assert!(named_sibling, "the control was named: {log}");
    let parent_pid = parent_pid as i32;
    assert!(
        !named(&log).contains(&parent_pid),
        "the monitor's parent ({parent_pid}) was named: {log}"
    );
}

#[test]
#[ignore = "needs root"]
fn in_a_pid_namespace_of_its_own_ebpf_mode_is_refused_and_auto_mode_polls() {
    // The kernel side sees the host's PIDs; in a PID namespace of its own the monitor could
    // not tell which process they are.
    let in_namespace = |args: &[&str]| {
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc"])
            .args(args)
            .output()
            .unwrap()
    };
    let monitor = bin("memory-monitor");
    let monitor = monitor.to_str().unwrap();
    let output = in_namespace(&[monitor, "--mode", "ebpf", "-m", "32", "anything"]);
    the_one_error(
        &output,
        &["eBPF mode is unavailable", "a PID namespace of its own"],
    );
    // Auto mode polls, saying why on its start line (stopped after a moment by SIGINT).
    let stop = ["timeout", "--preserve-status", "-s", "INT", "2"];
    let output = in_namespace(&[&stop[..], &[monitor, "-m", "32", "anything"]].concat());
    let log = String::from_utf8_lossy(&output.stderr);
    let start = log.lines().next().unwrap_or_default();
    assert!(
        start.contains("mode=poll") && start.contains("a PID namespace of its own"),
        "{log}"
    );
    assert!(output.status.success(), "{log}");
}
