//! `--exec`: a command run on each breach, after the signal, never holding anything up.

use memory_monitor_tests::{Monitor, Target, unique_name, wait_until};

const USR1: i32 = libc::SIGUSR1;

/// Poll mode every 100 ms, a 32 MiB limit, SIGUSR1, then `rest`.
fn args<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--mode", "poll", "-i", "100ms", "-m", "32M", "-s", "USR1"];
    args.extend_from_slice(rest);
    args
}

#[test]
fn exec_runs_once_per_breach_with_the_breach_in_its_environment() {
    let out = std::env::temp_dir().join(format!("mm-exec-{}", std::process::id()));
    let profiles = std::env::temp_dir().join(format!("mm-exec-profiles-{}", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let command = format!(
        "echo \"$MM_PID $MM_NAME $MM_RSS_BYTES $MM_LIMIT_BYTES $MM_SIGNAL $MM_PROFILE $MM_RULE\" >> {}",
        out.display()
    );
    let name = unique_name("mmh-exec");
    let mut target = Target::spawn(&name);
    target.grow(48);
    let profile_dir = profiles.display().to_string();
    let mut monitor = Monitor::start(&args(&[
        "--repeat",
        "150ms",
        "--profile-dir",
        &profile_dir,
        "--exec",
        &command,
        &name,
    ]));
    assert!(target.wait_signal(USR1), "{}", monitor.log_text());
    assert!(wait_until(|| out.exists()), "{}", monitor.log_text());
    // Repeats are not new breaches: still one run.
    monitor.expect_count(&["still over the limit"], 3);
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let fields: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(fields[0], target.pid().to_string());
    assert_eq!(fields[1], name);
    assert!(fields[2].parse::<u64>().unwrap() > 32 << 20, "{text}");
    assert_eq!(fields[3], (32u64 << 20).to_string());
    assert_eq!(fields[4], "SIGUSR1");
    assert!(
        fields[5].contains(&format!("_{name}_{}_", target.pid())) && fields[5].ends_with(".pb.gz"),
        "{text}"
    );
    assert_eq!(fields[6], "command-line");
    assert!(monitor.stop().success());
    std::fs::remove_file(&out).unwrap();
    let _ = std::fs::remove_dir_all(&profiles);
}

#[test]
fn a_stuck_hook_is_killed_and_holds_up_no_signal() {
    let name = unique_name("mmh-hang");
    let mut first = Target::spawn(&name);
    let mut second = Target::spawn(&format!("{name}b"));
    first.grow(48);
    let mut monitor = Monitor::start(&args(&[
        "--repeat",
        "never",
        "--exec",
        "sleep 60",
        "--exec-timeout",
        "500ms",
        &name,
    ]));
    assert!(first.wait_signal(USR1), "{}", monitor.log_text());
    // While the first hook hangs, the next breach is signalled all the same.
    second.grow(48);
    assert!(second.wait_signal(USR1), "{}", monitor.log_text());
    monitor.expect_log(&[
        "exec: ",
        "took over 500ms; killed",
        &format!("pid={}", first.pid()),
    ]);
    assert!(monitor.stop().success());
}
