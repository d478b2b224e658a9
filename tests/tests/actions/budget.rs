//! `--group-limit`: one budget over every process a rule watches. Real processes, each far
//! under its own limit, cross the budget together; one member is signalled, the largest or
//! the fastest-growing, and the next only after the settle time. A group just under its
//! budget is left alone.

use memory_monitor_tests::{Monitor, Target, resident_bytes, run_monitor, unique_name, wait_until};

const USR1: i32 = libc::SIGUSR1;

/// `bytes` as a size the monitor reads exactly (KiB).
fn kib(bytes: u64) -> String {
    format!("{}K", bytes >> 10)
}

/// The monitor in `mode` watching `name`: each process far under its own limit (1 GiB),
/// SIGUSR1 (which the targets only report) to a member when the group goes over `budget`,
/// then `more`; returned once it has read the group of `members` (and, in eBPF mode, shared
/// the budget out among them).
fn watch_group(mode: &str, name: &str, budget: u64, members: usize, more: &[&str]) -> Monitor {
    let budget = kib(budget);
    let mut args = vec![
        "--mode",
        mode,
        "-i",
        "100ms",
        "-v",
        "-m",
        "1G",
        "-s",
        "USR1",
        "--group-limit",
        &budget,
    ];
    args.extend_from_slice(more);
    args.push(name);
    let mut monitor = Monitor::start(&args);
    monitor.expect_log(&["watching", &format!("mode={mode}")]);
    monitor.expect_log(&[r#"event="group_read""#, &format!("members={members}")]);
    monitor
}

/// Waits until the monitor in `mode` has read the group at more than `above` bytes; that
/// reading's line. Poll mode reads it every cycle; eBPF mode when a member crosses its share
/// (as the caller has made one do), then again after each report's gap while it grows.
fn expect_group_above(monitor: &mut Monitor, above: u64) -> String {
    loop {
        monitor.expect_more(r#"event="group_read""#, 1);
        let text = monitor.log_text();
        let last = text
            .lines()
            .rev()
            .find(|l| l.contains(r#"event="group_read""#));
        if let Some(line) = last.filter(|line| field(line, "group_rss_bytes") > above) {
            return line.to_string();
        }
    }
}

/// Asserts that none of `targets` was signalled (as far as the monitor in `mode` has told).
fn assert_unsignalled<const N: usize>(
    monitor: &mut Monitor,
    mode: &str,
    targets: [&mut Target; N],
) {
    for target in targets {
        let pid = target.pid();
        assert!(
            target.signals().is_empty(),
            "{mode}: {pid}: {}",
            monitor.log_text()
        );
    }
}

/// A field of a log line, as an integer.
fn field(line: &str, name: &str) -> u64 {
    let prefix = format!("{name}=");
    line.split(' ')
        .find_map(|word| word.strip_prefix(prefix.as_str()))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

/// Three targets named `name`, grown by `mib` MiB each.
fn three(name: &str, mib: [usize; 3]) -> [Target; 3] {
    mib.map(|mib| {
        let mut target = Target::spawn(name);
        target.grow(mib);
        target
    })
}

/// 12 MiB more than `targets` hold together (to a KiB): the budget of a group just under it.
fn just_over(targets: [&Target; 3]) -> u64 {
    (targets.iter().map(|t| t.rss()).sum::<u64>() + (12 << 20)) >> 10 << 10
}

#[test]
#[ignore = "needs root"]
fn the_largest_member_is_signalled_once_per_crossing_and_not_while_under() {
    for mode in ["poll", "ebpf"] {
        let name = unique_name("mmb-lg");
        let [mut small, mut large, mut third] = three(&name, [8, 24, 8]);
        let budget = just_over([&small, &large, &third]);
        let mut monitor = watch_group(mode, &name, budget, 3, &["--group-settle", "1h"]);
        let before = field(
            &monitor.expect_log(&[r#"event="group_read""#]),
            "group_rss_bytes",
        );
        // More than its share of what is left (a third of 12 MiB), less than all of it: the
        // group is read (in eBPF mode on the kernel side's report), and left alone.
        small.grow(6);
        let read = expect_group_above(&mut monitor, before + (5 << 20));
        if mode == "poll" {
            // A cycle begun after the growth, so none is still to come.
            monitor.expect_more(r#"event="group_read""#, 2);
        }
        assert_eq!(
            monitor.count(&[r#"event="group_breach""#]),
            0,
            "{mode}: {read}"
        );
        assert_unsignalled(&mut monitor, mode, [&mut small, &mut large, &mut third]);
        // Together over, each still far under its own limit: the largest is signalled.
        third.grow(12);
        let breach = monitor.expect_log(&[r#"event="group_breach""#]);
        let fields = [
            format!("pid={}", large.pid()),
            "members=3".to_string(),
            "pick=largest".to_string(),
            format!("group_limit_bytes={budget}"),
        ];
        for field in &fields {
            assert!(breach.contains(field.as_str()), "{mode}: {field}: {breach}");
        }
        assert!(field(&breach, "group_rss_bytes") > budget, "{breach}");
        assert_eq!(large.signals(), [USR1], "{mode}: {}", monitor.log_text());
        // Still over (SIGUSR1 frees nothing) and read again (a new member, forked), but
        // settling: nobody else.
        let child = small.fork();
        monitor.expect_log(&[r#"event="group_read""#, "members=4"]);
        assert_eq!(
            monitor.count(&[r#"event="group_breach""#]),
            1,
            "{mode}: {}",
            monitor.log_text()
        );
        assert_eq!(large.signals(), [USR1], "{mode}");
        assert!(small.signals_of(child).is_empty(), "{mode}");
        assert_unsignalled(&mut monitor, mode, [&mut small, &mut third]);
        assert!(monitor.stop().success());
    }
}

#[test]
#[ignore = "needs root"]
fn the_next_member_is_signalled_once_the_group_has_settled() {
    for mode in ["poll", "ebpf"] {
        let name = unique_name("mmb-st");
        let [mut small, mut large, mut third] = three(&name, [8, 24, 8]);
        // Over from the start, and staying over: a member at every settle time's end.
        let budget = (small.rss() + large.rss() + third.rss() - (4 << 20)) >> 10 << 10;
        // The hook writes what it was told into a file of its own, renamed into place.
        let dir = std::env::temp_dir().join(unique_name("mmb-hook"));
        std::fs::create_dir_all(&dir).unwrap();
        let hook = format!(
            "echo \"$MM_EVENT $MM_PID $MM_RSS_BYTES $MM_LIMIT_BYTES $MM_SIGNAL\" > {0}/.run.$$ && mv {0}/.run.$$ {0}/run.$$",
            dir.display()
        );
        let more = ["--group-settle", "200ms", "--exec", &hook];
        let mut monitor = watch_group(mode, &name, budget, 3, &more);
        let breach = [r#"event="group_breach""#, &format!("pid={}", large.pid())];
        monitor.expect_count(&breach, 2);
        assert!(large.signals().len() >= 2, "{mode}: {}", monitor.log_text());
        assert_unsignalled(&mut monitor, mode, [&mut small, &mut third]);
        let run = || {
            std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .find(|e| e.file_name().to_string_lossy().starts_with("run."))
        };
        assert!(
            wait_until(|| run().is_some()),
            "{mode}: {}",
            monitor.log_text()
        );
        let text = std::fs::read_to_string(run().unwrap().path()).unwrap();
        let told: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(
            told[..2],
            ["group_breach", &large.pid().to_string()],
            "{mode}: {text}"
        );
        assert!(told[2].parse::<u64>().unwrap() > budget, "{mode}: {text}");
        assert_eq!(
            told[3..],
            [budget.to_string().as_str(), "SIGUSR1"],
            "{mode}: {text}"
        );
        assert!(monitor.stop().success());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
#[ignore = "needs root"]
fn the_fastest_pick_signals_the_member_that_grew_not_the_largest() {
    for mode in ["poll", "ebpf"] {
        let name = unique_name("mmb-fa");
        let [mut large, mut steady, mut grower] = three(&name, [32, 8, 8]);
        let budget = just_over([&large, &steady, &grower]);
        let mut monitor = watch_group(mode, &name, budget, 3, &["--group-pick", "fastest"]);
        grower.grow(16);
        let breach = monitor.expect_log(&[r#"event="group_breach""#]);
        for field in [format!("pid={}", grower.pid()), "pick=fastest".to_string()] {
            assert!(breach.contains(field.as_str()), "{mode}: {field}: {breach}");
        }
        assert!(field(&breach, "growth_bytes_per_s") > 0, "{breach}");
        assert_eq!(grower.signals(), [USR1], "{mode}: {}", monitor.log_text());
        assert_unsignalled(&mut monitor, mode, [&mut large, &mut steady]);
        assert!(monitor.stop().success());
    }
}

#[test]
#[ignore = "needs root"]
fn a_process_and_the_children_it_forks_share_one_budget() {
    for mode in ["poll", "ebpf"] {
        let name = unique_name("mmb-tr");
        let mut leader = Target::spawn(&name);
        leader.grow(24);
        // Two and a half times the leader: it and one child (the leader's memory mapped in
        // both) are under; a second child takes the three over.
        let budget = (leader.rss() * 5 / 2) >> 10 << 10;
        let mut monitor = watch_group(mode, &name, budget, 1, &["--group-settle", "1h"]);
        let first = leader.fork();
        monitor.expect_log(&[r#"event="group_read""#, "members=2"]);
        assert_eq!(monitor.count(&[r#"event="group_breach""#]), 0, "{mode}");
        let second = leader.fork();
        let breach = monitor.expect_log(&[r#"event="group_breach""#, "members=3"]);
        assert!(resident_bytes(&second.to_string()) > 0, "{mode}");
        // Exactly one of the three, once.
        let mut signalled = vec![leader.signals()];
        for child in [first, second] {
            signalled.push(leader.signals_of(child));
        }
        signalled.sort();
        assert_eq!(
            signalled,
            [vec![], vec![], vec![USR1]],
            "{mode}: {breach}\n{}",
            monitor.log_text()
        );
        assert!(monitor.stop().success());
    }
}

#[test]
fn group_settings_without_a_budget_or_of_each_cgroup_are_refused() {
    for (args, said) in [
        (
            &["--group-pick", "fastest", "-m", "1G", "mmb-never-runs"][..],
            "--group-pick needs --group-limit",
        ),
        (
            &["--group-settle", "5s", "-m", "1G", "mmb-never-runs"],
            "--group-settle needs --group-limit",
        ),
        (
            &[
                "--group-limit",
                "50% of cgroup",
                "-m",
                "1G",
                "mmb-never-runs",
            ],
            "--group-limit cannot be a share of each process's cgroup",
        ),
        (
            &[
                "--group-limit",
                "1G",
                "--group-pick",
                "oldest",
                "-m",
                "1G",
                "mmb-never-runs",
            ],
            "invalid value 'oldest' for '--group-pick <WHICH>' [possible values: largest, fastest]",
        ),
        (
            &[
                "--group-limit",
                "1G",
                "--group-settle",
                "0s",
                "-m",
                "1G",
                "mmb-never-runs",
            ],
            "invalid value '0s' for '--group-settle <DURATION>'",
        ),
    ] {
        let (status, stderr) = run_monitor(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(said), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
}
