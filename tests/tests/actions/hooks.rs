//! `--exec`: a command run on each breach, after the signal, never holding anything up, and
//! given none of the monitor's own environment, limits and protections.

use std::os::unix::process::CommandExt as _;

use memory_monitor_tests::{
    Monitor, Target, capability_set, unique_name, usr1_over_32m, wait_until,
};

const USR1: i32 = libc::SIGUSR1;

/// Poll mode every 100 ms, a 32 MiB limit, SIGUSR1, then `rest`.
fn args<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--mode", "poll", "-i", "100ms", "-m", "32M", "-s", "USR1"];
    args.extend_from_slice(rest);
    args
}

/// The files in `dir` whose names start with `prefix`.
fn files_starting(dir: &std::path::Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|path: &std::path::PathBuf| {
        path.file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with(prefix))
    });
    files
}

#[test]
fn exec_runs_once_per_breach_with_the_breach_in_its_environment() {
    let dir = std::env::temp_dir().join(unique_name("mmh-exec"));
    std::fs::create_dir_all(&dir).unwrap();
    let profiles = dir.join("profiles");
    // Each run writes a file of its own aside and renames it into place: complete once there.
    let command = format!(
        "echo \"$MM_PID $MM_NAME $MM_RSS_BYTES $MM_LIMIT_BYTES $MM_SIGNAL $MM_PROFILE $MM_RULE\" > {0}/.run.$$ && mv {0}/.run.$$ {0}/run.$$",
        dir.display()
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
    assert!(
        wait_until(|| !files_starting(&dir, "run.").is_empty()),
        "{}",
        monitor.log_text()
    );
    // Repeats are not new breaches: still one run.
    monitor.expect_count(&["still over the limit"], 3);
    let runs = files_starting(&dir, "run.");
    assert_eq!(runs.len(), 1, "{runs:?}");
    let text = std::fs::read_to_string(&runs[0]).unwrap();
    let fields: Vec<&str> = text.trim_end().split(' ').collect();
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
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_dry_run_or_a_check_runs_no_hook_writes_no_profile_and_says_would_signal() {
    let dir = std::env::temp_dir().join(unique_name("mmh-dry"));
    std::fs::create_dir_all(&dir).unwrap();
    let profile_dir = dir.join("profiles").display().to_string();
    let command = format!("touch {}/ran.$$", dir.display());
    let name = unique_name("mmh-dry");
    let mut target = Target::spawn(&name);
    target.grow(48);
    let acts = ["--profile-dir", &profile_dir, "--exec", &command];
    let mut dry = args(&["-v", "--repeat", "150ms", "--dry-run"]);
    dry.extend_from_slice(&acts);
    dry.push(&name);
    let mut monitor = Monitor::start(&dry);
    let start = monitor.expect_log(&[r#"event="start""#]);
    assert!(
        start.contains("dry run: nothing is signalled or run"),
        "{start}"
    );
    monitor.expect_log(&["over the limit; would signal (dry run)"]);
    monitor.expect_log(&["still over the limit; would signal again (dry run)"]);
    // Hooks run on threads of their own: give one time to show itself, in checks.
    monitor.expect_more("checked", 10);
    let (status, log) = memory_monitor_tests::run_monitor(&{
        let mut once = args(&["--once"]);
        once.extend_from_slice(&acts);
        once.push(&name);
        once
    });
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(monitor.stop().success());
    assert!(files_starting(&dir, "ran.").is_empty(), "a hook ran");
    assert!(
        files_starting(&dir.join("profiles"), "").is_empty(),
        "a profile was written"
    );
    assert!(target.signals().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
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

/// The processes other than `except` whose command line contains `marker`.
fn processes_with(marker: &str, except: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != except)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                cmdline
                    .windows(marker.len())
                    .any(|w| w == marker.as_bytes())
            })
        })
        .collect()
}

#[test]
fn a_hook_killed_at_its_timeout_takes_what_it_started_with_it() {
    let name = unique_name("mmh-grp");
    let started = std::env::temp_dir().join(format!("{name}.started"));
    let _ = std::fs::remove_file(&started);
    // The hook's shell starts a shell (the grandchild, known by the marker in its command
    // line) that starts a sleep; the timeout must take all three.
    let marker = format!("grandchild-of-{name}");
    let command = format!(
        "sh -c 'touch {}; sleep 300; : {marker}' & wait",
        started.display()
    );
    let mut target = Target::spawn(&name);
    target.grow(48);
    let mut monitor = Monitor::start(&args(&[
        "--repeat",
        "never",
        "--exec",
        &command,
        "--exec-timeout",
        "5s",
        &name,
    ]));
    assert!(target.wait_signal(USR1), "{}", monitor.log_text());
    assert!(wait_until(|| started.exists()), "{}", monitor.log_text());
    monitor.expect_log(&["took over 5s; killed", &format!("pid={}", target.pid())]);
    // The monitor's own command line holds the marker too.
    let gone = wait_until(|| processes_with(&marker, monitor.pid()).is_empty());
    let left = processes_with(&marker, monitor.pid());
    for &pid in &left {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(gone, "{left:?} outlived the hook's timeout");
    assert!(monitor.stop().success());
    std::fs::remove_file(&started).unwrap();
}

/// Soft `RLIMIT_NOFILE` the monitor is started with (it raises its own).
const NOFILE: u64 = 256;
/// Soft `RLIMIT_MEMLOCK` the monitor is started with, KiB (it lifts its own where allowed).
const MEMLOCK_KIB: u64 = 64;

#[test]
fn a_hook_gets_a_clean_environment_and_none_of_the_monitors_protections() {
    let name = unique_name("mmh-env");
    let out = std::env::temp_dir().join(format!("{name}.env"));
    let _ = std::fs::remove_file(&out);
    // Written aside and renamed: the file is complete once it exists.
    let command = format!(
        "{{ cat /proc/self/oom_score_adj; ulimit -l; ulimit -n; env; }} > {0}.tmp && mv {0}.tmp {0}",
        out.display()
    );
    let mut target = Target::spawn(&name);
    target.grow(48);
    let arguments = args(&[
        "--repeat",
        "never",
        "--oom-score-adj",
        "500",
        "--exec",
        &command,
        &name,
    ]);
    let mut monitor = Monitor::start_with(&arguments, |monitor| {
        monitor.env("MM_TEST_SECRET", "x");
        // SAFETY: between fork and exec: system calls only.
        unsafe {
            monitor.pre_exec(|| {
                use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
                for (resource, soft) in [
                    (Resource::Nofile, NOFILE),
                    (Resource::Memlock, MEMLOCK_KIB << 10),
                ] {
                    let maximum = getrlimit(resource).maximum;
                    let current = Some(maximum.map_or(soft, |hard| hard.min(soft)));
                    setrlimit(resource, Rlimit { current, maximum })?;
                }
                Ok(())
            });
        }
    });
    assert!(target.wait_signal(USR1), "{}", monitor.log_text());
    assert!(wait_until(|| out.exists()), "{}", monitor.log_text());
    // What the monitor holds itself, which the hook must not inherit.
    let pid = monitor.pid();
    let oom = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
    assert_eq!(oom.trim(), "500");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let open_files: u64 = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(open_files > NOFILE, "the monitor raised its own: {limits}");

    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "0", "OOM score adjustment: {text}");
    assert_eq!(
        lines[1],
        MEMLOCK_KIB.to_string(),
        "locked-memory limit: {text}"
    );
    assert_eq!(lines[2], NOFILE.to_string(), "open-files limit: {text}");
    let mut names: Vec<&str> = lines[3..]
        .iter()
        .filter_map(|line| Some(line.split_once('=')?.0))
        // The shell's own.
        .filter(|name| *name != "PWD")
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "MM_ACTED_ON",
            "MM_CONTAINER_ID",
            "MM_EVENT",
            "MM_LIMIT_BYTES",
            "MM_NAME",
            "MM_PID",
            "MM_POD_UID",
            "MM_PROFILE",
            "MM_RSS_BYTES",
            "MM_RULE",
            "MM_SIGNAL",
            "MM_UID",
            "MM_USER",
            "PATH"
        ],
        "{text}"
    );
    assert!(monitor.stop().success());
    std::fs::remove_file(&out).unwrap();
}

#[test]
fn at_most_four_hooks_run_at_once_and_the_rest_wait_their_turn() {
    // Six breaches whose hooks each wait for a go-ahead: four run, two wait; given it, all
    // six have run.
    let dir = std::env::temp_dir().join(unique_name("mmh-cc"));
    std::fs::create_dir_all(&dir).unwrap();
    let command = format!(
        "touch {0}/started.$MM_PID; while [ ! -e {0}/go ]; do sleep 0.05; done; touch {0}/done.$MM_PID",
        dir.display()
    );
    let name = unique_name("mmh-cc");
    let mut monitor = Monitor::start(&args(&["--repeat", "never", "--exec", &command, &name]));
    let mut targets: Vec<Target> = (0..6).map(|_| Target::spawn(&name)).collect();
    for target in &mut targets {
        target.grow(48);
    }
    for target in &mut targets {
        assert!(target.wait_signal(USR1), "{}", monitor.log_text());
    }
    monitor.expect_count(&["over the limit"], 6);
    let count = |prefix: &str| files_starting(&dir, prefix).len();
    assert!(
        wait_until(|| count("started.") == 4),
        "{}",
        monitor.log_text()
    );
    // Four are held until the go-ahead, so no fifth can have started, however long one waits.
    assert_eq!(count("started."), 4);
    std::fs::write(dir.join("go"), "").unwrap();
    assert!(wait_until(|| count("done.") == 6), "{}", monitor.log_text());
    assert!(monitor.stop().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn what_a_failing_hook_says_is_one_escaped_field_of_one_log_line() {
    let name = unique_name("mmh-say");
    let mut target = Target::spawn(&name);
    target.grow(48);
    let command = "echo 'a first line' >&2; printf '{\"forged\": true}\\n' >&2; exit 3";
    let mut monitor = Monitor::start(&args(&["--log-format", "json", "--exec", command, &name]));
    let failed = monitor.expect_log(&[r#""event":"exec_failed""#]);
    // The last line it said, after why it failed.
    assert!(
        failed.contains(r#"failed (exit status: 3): {\"forged\": true}""#),
        "{failed}"
    );
    let log = monitor.log_text();
    assert!(monitor.stop().success());
    for line in log.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(event.get("forged").is_none(), "{line}");
    }
}

/// A hook and a `cmd:` writer run by a root monitor in eBPF mode (which keeps `CAP_KILL`,
/// `CAP_SYS_PTRACE`, `CAP_DAC_READ_SEARCH` for itself) hold no capability at all, not even in
/// their bounding sets: with those three, a process could open another root process's memory.
#[test]
#[ignore = "needs root"]
fn what_the_monitor_runs_holds_no_capability() {
    let name = unique_name("mmh-cap0");
    let hook_out = std::env::temp_dir().join(format!("{name}.hook"));
    let writer_out = std::env::temp_dir().join(format!("{name}.writer"));
    // Written aside and renamed: the file is complete once it exists.
    let save = |out: &std::path::Path| {
        format!(
            "cat /proc/self/status > {0}.tmp && mv {0}.tmp {0}",
            out.display()
        )
    };
    let writer = format!("cmd:cat > /dev/null; {}", save(&writer_out));
    let mut target = Target::spawn(&name);
    target.grow(48);
    let hook = save(&hook_out);
    let mut monitor = Monitor::start(&usr1_over_32m(
        "ebpf",
        &["--exec", &hook, "--profile-to", &writer, &name],
    ));
    assert!(target.wait_signal(USR1), "{}", monitor.log_text());
    for out in [&hook_out, &writer_out] {
        assert!(wait_until(|| out.exists()), "{}", monitor.log_text());
        let status = std::fs::read_to_string(out).unwrap();
        for set in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
            assert_eq!(
                capability_set(&status, set),
                0,
                "{set} of {}: {status}",
                out.display()
            );
        }
        std::fs::remove_file(out).unwrap();
    }
    // The monitor itself still holds what it signals with (CAP_KILL, 5).
    let own = std::fs::read_to_string(format!("/proc/{}/status", monitor.pid())).unwrap();
    assert_ne!(capability_set(&own, "CapEff") & (1 << 5), 0);
    assert!(monitor.stop().success());
}
