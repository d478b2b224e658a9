//! Leak trends (`--leak-horizon`), in poll mode and in eBPF mode (where the kernel side
//! reports each 32nd of the limit a process crosses): a process leaking a few MiB a second
//! toward its limit is named minutes before it would get there, with a time to the limit
//! within 25 % of the truth, its hook run with `MM_EVENT=leak_suspected`, and no signal; one
//! that fills a cache and levels off is not named, nor one that grows and frees in cycles.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use memory_monitor_tests::{Monitor, Target, unique_name, wait_until};

/// The limit the tests' rule sets: 512 MiB, waypoints 16 MiB apart.
const LIMIT: u64 = 512 << 20;

/// The modes, each as the monitor is told it.
const WAYS: [&[&str]; 2] = [&["--mode", "poll", "-i", "100ms"], &["--mode", "ebpf"]];

/// The monitor started in `way`, watching `name` at [`LIMIT`] with a horizon of 10 minutes, a
/// warm-up of a second and growth sustained 12 s, and running `exec` on what it names.
fn start(way: &[&str], name: &str, exec: &str) -> Monitor {
    let mut args = way.to_vec();
    args.extend_from_slice(&[
        "-m",
        "512M",
        "--leak-horizon",
        "10m",
        "--leak-warmup",
        "1s",
        "--leak-sustain",
        "12s",
        "-s",
        "USR1",
        "--repeat",
        "never",
        "-v",
        "--exec",
        exec,
        name,
    ]);
    let mut monitor = Monitor::start(&args);
    monitor.expect_log(&["checked", "watched=1"]);
    monitor
}

/// The number `key=` holds in `line`.
fn field(line: &str, key: &str) -> f64 {
    let at = line.find(&format!(" {key}=")).expect(key) + key.len() + 2;
    let value: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    value.parse().expect(key)
}

/// A hook that writes `$MM_EVENT $MM_PID $MM_SIGNAL` into a file of its own (aside, then
/// renamed: complete once there); the command and the file.
fn hook() -> (String, PathBuf) {
    let file = std::env::temp_dir().join(unique_name("mml-hook"));
    let command = format!(
        "echo \"$MM_EVENT $MM_PID $MM_SIGNAL\" > {0}.$$ && mv {0}.$$ {0}",
        file.display()
    );
    (command, file)
}

/// Waits until the monitor in `way` has handled every change `target` made before: in poll
/// mode two more looks; in eBPF mode the kernel side's report of a rename out of the rule,
/// which comes after every waypoint it reported before.
fn caught_up(way: &[&str], monitor: &mut Monitor, target: &mut Target) {
    if way.contains(&"poll") {
        monitor.expect_caught_up("poll");
        return;
    }
    target.rename(&unique_name("mml-out"));
    monitor.expect_log(&["no longer watched", &format!("pid={}", target.pid())]);
}

#[test]
#[ignore = "needs root"]
fn a_process_leaking_toward_its_limit_is_named_minutes_before_it() {
    for way in WAYS {
        let (exec, ran) = hook();
        let name = unique_name("mml");
        let mut target = Target::spawn(&name);
        let pid = format!("pid={}", target.pid());
        let mut monitor = start(way, &name, &exec);
        // 3 MiB a second, in steps of 384 KiB, each with its time, until it is named.
        let mut grown = vec![(Instant::now(), target.rss())];
        while monitor.count(&[r#"event="leak_suspected""#]) == 0 {
            let rss = target.grow_kib(384);
            grown.push((Instant::now(), rss));
            assert!(
                rss < LIMIT * 3 / 4,
                "{way:?}: not named by 3/4 of its limit: {}",
                monitor.log_text()
            );
            std::thread::sleep(Duration::from_millis(125));
        }
        let line = monitor.expect_log(&[r#"event="leak_suspected""#, &pid]);
        // The truth: the rest of the way to the limit, at the pace it grew at over the last
        // 12 s (the growth the monitor was to judge).
        let (now, rss) = *grown.last().unwrap();
        let (then, before) = *grown
            .iter()
            .find(|(at, _)| now.duration_since(*at) <= Duration::from_secs(12))
            .unwrap();
        let pace = (rss - before) as f64 / now.duration_since(then).as_secs_f64();
        let truth = (LIMIT as f64 - field(&line, "rss_bytes")) / pace;
        let said = field(&line, "time_to_limit_s");
        assert!(
            (said - truth).abs() < truth / 4.0,
            "{way:?}: said {said} s, truth {truth:.0} s: {line}"
        );
        assert!(truth > 60.0, "{way:?}: minutes before, not {truth:.0} s");
        assert!(
            line.contains("limit_bytes=536870912") && field(&line, "slope_bytes_per_s") > 0.0,
            "{way:?}: {line}"
        );
        assert!(
            wait_until(|| ran.exists()),
            "{way:?}: {}",
            monitor.log_text()
        );
        let told = std::fs::read_to_string(&ran).unwrap();
        assert_eq!(told.trim_end(), format!("leak_suspected {}", target.pid()));
        // Named once, and never signalled.
        target.grow(16);
        caught_up(way, &mut monitor, &mut target);
        assert_eq!(monitor.count(&[r#"event="leak_suspected""#]), 1, "{way:?}");
        assert!(target.signals().is_empty(), "{way:?}");
        assert!(monitor.stop().success());
        std::fs::remove_file(&ran).unwrap();
    }
}

/// Runs `behave` on a target watched in each way, then checks that it was not named and its
/// hook never ran.
fn never_named(label: &str, behave: impl Fn(&mut Target)) {
    for way in WAYS {
        let (exec, ran) = hook();
        let name = unique_name(label);
        let mut target = Target::spawn(&name);
        let mut monitor = start(way, &name, &exec);
        behave(&mut target);
        caught_up(way, &mut monitor, &mut target);
        assert_eq!(
            monitor.count(&[r#"event="leak_suspected""#]),
            0,
            "{way:?}: {}",
            monitor.log_text()
        );
        assert!(!ran.exists(), "{way:?}");
        assert!(monitor.stop().success());
    }
}

#[test]
#[ignore = "needs root"]
fn a_process_that_fills_a_cache_and_levels_off_is_not_named() {
    never_named("mml-c", |target| {
        // Past its warm-up, fills 96 MiB in a second and a half, then stays, longer than the
        // growth would have to last.
        std::thread::sleep(Duration::from_millis(1500));
        for _ in 0..6 {
            target.grow(16);
            std::thread::sleep(Duration::from_millis(250));
        }
        std::thread::sleep(Duration::from_secs(16));
    });
}

#[test]
#[ignore = "needs root"]
fn a_process_that_grows_and_frees_in_cycles_is_not_named() {
    never_named("mml-g", |target| {
        // Cycles of 64 MiB grown over two seconds and freed at once, for twice the time growth
        // has to last.
        let cycles = Instant::now();
        while cycles.elapsed() < Duration::from_secs(24) {
            for _ in 0..8 {
                target.grow(8);
                std::thread::sleep(Duration::from_millis(250));
            }
            target.shrink(64);
            std::thread::sleep(Duration::from_millis(250));
        }
    });
}
