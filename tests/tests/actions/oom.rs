//! The kernel's own OOM kills, seen: a process in a memory cgroup with a small limit grows
//! past it, the kernel's OOM killer really kills it, and the monitor says so (`oom_kill`) and
//! counts it, under the rule that watched it or under `(unwatched)`.

use memory_monitor_tests::cgroup::{Cgroup, memory_hierarchy};
use memory_monitor_tests::scrape::{get, sample, served_at};
use memory_monitor_tests::{Monitor, Target, unique_name, wait_until};
use std::os::unix::process::ExitStatusExt as _;

/// The cgroup's limit: the target grows to twice as much.
const CGROUP_MIB: usize = 32;

/// A memory cgroup limited to [`CGROUP_MIB`], without swap to spill into.
fn small_cgroup() -> Cgroup {
    let (root, limit_file) = memory_hierarchy().expect("a memory controller");
    let cgroup = Cgroup::create(&root, &unique_name("mmo-cg"));
    cgroup.set(limit_file, &(CGROUP_MIB << 20).to_string());
    if cgroup.dir().join("memory.swap.max").exists() {
        cgroup.set("memory.swap.max", "0");
    }
    cgroup
}

/// The kernel has killed `target` (SIGKILL), which grew past its cgroup's limit. Reaped only
/// now: the monitor reads what the kernel does not say from `/proc`, where a process is until
/// it is reaped.
fn assert_oom_killed(target: &mut Target, monitor: &mut Monitor) {
    let status = target.wait_exit().expect("the target ends");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{status:?}\n{}",
        monitor.log_text()
    );
}

/// The monitor's `oom_kill` line for `target` (in `cgroup`), checked for what every one says.
fn expect_oom_kill(monitor: &mut Monitor, target: &Target, name: &str, cgroup: &Cgroup) -> String {
    let line = monitor.expect_log(&["oom_kill", &format!("pid={} ", target.pid())]);
    assert!(line.contains(&format!("name={name}")), "{line}");
    // A process already exiting shows no cgroup v1 path (the kernel shows `/`), and the
    // victim may be exiting by the time its report is read: then it is unknown, not wrong.
    let v1 = memory_hierarchy().is_some_and(|(_, limit)| limit == "memory.limit_in_bytes");
    let known = line.contains(&format!("cgroup={}", cgroup.path()));
    assert!(known || (v1 && line.contains("cgroup=unknown")), "{line}");
    assert!(line.contains("uid=0"), "{line}");
    // The kill's own figures where the kernel gives them, else /proc's while the victim had
    // not begun to exit: it had grown past most of the limit by then, whichever said it.
    // (Read later, they are unknown: what a process holds as it exits is not what it held.)
    if !line.contains("rss_from=\"unknown\"") {
        let rss: u64 = line
            .split("rss_bytes=")
            .nth(1)
            .and_then(|rest| rest.split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("rss_bytes in {line}"));
        assert!(rss > (CGROUP_MIB as u64 / 2) << 20, "{line}");
    }
    assert_documented(&line);
    line
}

/// Every field of an `oom_kill` line is in the guide's row for it.
fn assert_documented(line: &str) {
    let row = crate::logs::guide_row("oom_kill");
    for (field, _) in crate::logs::logfmt(line) {
        assert!(
            field == "event" || row.contains(&format!("`{field}`")),
            "{field} is not in {row}"
        );
    }
}

/// The count of OOM kills under `rule` in the monitor's metrics, once it is `n`.
fn expect_counted(address: &str, rule: &str, n: f64) {
    expect_count(address, rule, |count| count == n);
}

/// The count of OOM kills under `rule`, once `wanted` accepts it (kills elsewhere on this
/// machine meanwhile, other tests' among them, count as unwatched too).
fn expect_count(address: &str, rule: &str, wanted: impl Fn(f64) -> bool) {
    let series = format!("memory_monitor_oom_kills_total{{rule=\"{rule}\"}}");
    assert!(
        wait_until(|| sample(&get(address, "/metrics").1, &series).is_some_and(&wanted)),
        "{series} is not as expected:\n{}",
        get(address, "/metrics").1
    );
}

#[test]
#[ignore = "needs root"]
fn the_kernel_killing_an_unwatched_process_is_said_and_counted_in_ebpf_mode() {
    let cgroup = small_cgroup();
    let name = unique_name("mmo-un");
    let mut target = Target::spawn(&name);
    cgroup.add(target.pid());
    let mut monitor = Monitor::start(&[
        "--mode",
        "ebpf",
        "-m",
        "1G",
        "--metrics-addr",
        "127.0.0.1:0",
        &unique_name("mmo-none"),
    ]);
    let address = served_at(&mut monitor);
    monitor.expect_log(&["watching", "mode=ebpf"]);
    expect_counted(&address, "(unwatched)", 0.0);

    target.start_growing(2 * CGROUP_MIB);
    let line = expect_oom_kill(&mut monitor, &target, &name, &cgroup);
    assert_oom_killed(&mut target, &mut monitor);
    assert!(!line.contains("rule="), "no rule watched it: {line}");
    assert!(!line.contains("breach_ms"), "{line}");
    expect_count(&address, "(unwatched)", |n| n >= 1.0);
    assert!(monitor.stop().success());
}

#[test]
#[ignore = "needs root"]
fn the_kernel_killing_a_process_during_its_breach_says_so_in_ebpf_mode() {
    let cgroup = small_cgroup();
    let name = unique_name("mmo-br");
    let mut target = Target::spawn(&name);
    cgroup.add(target.pid());
    // Its limit under the cgroup's: it is signalled (USR1, which it only reports) first, and
    // the kernel kills it as it grows on.
    let mut monitor = Monitor::start(&[
        "--mode",
        "ebpf",
        "-m",
        "8M",
        "-s",
        "USR1",
        "--repeat",
        "never",
        "--metrics-addr",
        "127.0.0.1:0",
        "-v",
        &name,
    ]);
    let address = served_at(&mut monitor);
    monitor.expect_log(&["watching", "mode=ebpf"]);
    monitor.expect_log(&["checked"]);
    target.grow(CGROUP_MIB / 2);
    assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());

    target.start_growing(2 * CGROUP_MIB);
    let line = expect_oom_kill(&mut monitor, &target, &name, &cgroup);
    assert_oom_killed(&mut target, &mut monitor);
    assert!(line.contains("rule=\"command-line\""), "{line}");
    assert!(
        line.contains("breach_ms="),
        "killed during its breach: {line}"
    );
    expect_counted(&address, "command-line", 1.0);
    assert!(monitor.stop().success());
}

/// Starts a poll-mode monitor watching processes named `name` (limit far above the cgroup's),
/// with metrics, and waits until it has looked at `/proc` once.
fn start_polling(name: &str) -> (Monitor, String) {
    let mut monitor = Monitor::start(&[
        "--mode",
        "poll",
        "-i",
        "100ms",
        "-m",
        "1G",
        "--metrics-addr",
        "127.0.0.1:0",
        "-v",
        name,
    ]);
    let address = served_at(&mut monitor);
    monitor.expect_log(&["watching", "mode=poll"]);
    monitor.expect_log(&["checked"]);
    (monitor, address)
}

#[test]
#[ignore = "needs root"]
fn the_kernel_killing_a_watched_process_is_counted_under_its_rule_in_poll_mode() {
    let cgroup = small_cgroup();
    let name = unique_name("mmo-pw");
    let mut target = Target::spawn(&name);
    cgroup.add(target.pid());
    let (mut monitor, address) = start_polling(&name);
    // Two more looks: the target's cgroup (it was moved in before the monitor started) is
    // followed from the first.
    monitor.expect_more("checked", 2);

    target.start_growing(2 * CGROUP_MIB);
    assert_oom_killed(&mut target, &mut monitor);
    // Polling cannot say which process it was: where, under which rule, and how many.
    let line = monitor.expect_log(&["oom_kill", "rule=\"command-line\""]);
    assert!(
        line.contains(&format!("cgroup={}", cgroup.path())),
        "{line}"
    );
    assert!(line.contains("count=1"), "{line}");
    assert_documented(&line);
    expect_counted(&address, "command-line", 1.0);
    assert!(monitor.stop().success());
}

#[test]
#[ignore = "needs root"]
fn the_kernel_killing_an_unwatched_process_is_counted_in_poll_mode() {
    let cgroup = small_cgroup();
    let mut target = Target::spawn(&unique_name("mmo-pu"));
    cgroup.add(target.pid());
    let (mut monitor, address) = start_polling(&unique_name("mmo-none"));
    expect_counted(&address, "(unwatched)", 0.0);

    target.start_growing(2 * CGROUP_MIB);
    assert_oom_killed(&mut target, &mut monitor);
    let line = monitor.expect_log(&["oom_kill", "count="]);
    assert!(!line.contains("rule="), "no rule watched it: {line}");
    assert_documented(&line);
    expect_count(&address, "(unwatched)", |n| n >= 1.0);
    assert!(monitor.stop().success());
}
