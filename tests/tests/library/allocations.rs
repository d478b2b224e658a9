//! A counting allocator proves that a steady poll cycle allocates nothing: the monitor keeps
//! working when the machine is out of memory, which is exactly when it is needed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use memory_monitor::config::Mode;
use memory_monitor::matcher::{MatchMode, Matcher};
use memory_monitor::rules::{
    ActOn, CgroupPath, Exclude, GroupBudget, Leak, Pick, Rule, RuleSet, Selector, WarnAt,
};
use memory_monitor::signal::Signal;
use memory_monitor::units::SizeSpec;
use memory_monitor::{Config, Monitor};
use memory_monitor_tests::counting::{allocations, allocations_in_steady_cycles};
use memory_monitor_tests::{Target, unique_name};

#[test]
fn steady_poll_cycles_allocate_nothing() {
    let name = unique_name("mma-st");
    let mut quiet: Vec<Target> = (0..4).map(|_| Target::spawn(&name)).collect();
    for target in &mut quiet {
        target.grow(4);
    }
    let mut over = Target::spawn(&name);
    over.grow(48);
    let _bystander = Target::spawn(&unique_name("mma-by"));

    // Realtime signals queue, so every signal sent is counted exactly once by the target.
    let signal: Signal = "RTMIN+1".parse().unwrap();
    let mut config = config_for(
        &name,
        signal,
        Some(Duration::from_secs(1)),
        SizeSpec::Bytes(32 << 20),
    );
    config.mode = Mode::Poll;
    let mut monitor = Monitor::new(config).unwrap();

    let _guard = log_as_the_binary_does();

    // The five matching targets are watched; one is over, and signalled every cycle.
    let expected = steady_cycles_allocate_nothing(&mut monitor, 5);
    assert!(over.wait_signals(signal.number(), expected));
    assert_eq!(
        over.signals().len(),
        expected,
        "every cycle's signal was delivered, once"
    );
    for target in &mut quiet {
        assert!(target.signals().is_empty());
    }
}

/// Kernel events handled before the allocations are counted, and at least as many after.
const WARM_UP: u64 = 200;
const MEASURED: u64 = 2000;

/// How far under its limit the kernel side reports process `pid`, on this kernel (by its BTF:
/// per-CPU error, or each thread's cached changes).
fn kernel_margin(pid: i32) -> u64 {
    let accounting = memory_monitor::kernel_accounting();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(1, |t| t.count() as u64);
    accounting.statm_error(threads)
}

#[test]
#[ignore = "needs root"]
fn thousands_of_kernel_events_allocate_nothing() {
    let name = unique_name("mma-ev");
    let mut target = Target::spawn(&name);
    // The limit sits 4 MiB above the target's size plus the kernel side's margin (the
    // counters' error on this kernel), so swinging by the margin and 8 MiB crosses it up and
    // comes back under the kernel side's trigger.
    let margin = kernel_margin(target.pid());
    let limit = target.grow(28) + margin + (4 << 20);
    let swing = (margin >> 20) as usize + 8;
    let target_pid = target.pid();

    let matcher = Matcher::new(MatchMode::Prefix, &name).unwrap();
    let mut rule = Rule::new("test", Selector::name(matcher), SizeSpec::Bytes(limit));
    rule.signal = "RTMIN+2".parse().unwrap();
    rule.repeat = None;
    // A warning level 2 MiB over where each swing starts: every swing crosses both levels, up
    // and back, so warnings are handled on the steady path too.
    rule.warn_at = Some(WarnAt::Bytes(limit - margin - (2 << 20)));
    // A group of one, its budget the limit: every swing crosses its share too, so the group
    // is read, signalled, and shared out again on the steady path as well.
    rule.group = Some(GroupBudget {
        limit,
        pick: Pick::Largest,
        settle: Duration::from_nanos(1),
    });
    // Leak trends: every swing crosses waypoints (a 32nd of the limit) up and down, each fed
    // to the trend and fitted, on the steady path too.
    rule.leak = Some(Leak {
        horizon: Duration::from_secs(3600),
        warmup: Duration::ZERO,
        sustain: Duration::from_secs(1),
    });
    let mut config = Config::new(RuleSet::new(vec![rule]).unwrap());
    config.mode = Mode::Ebpf;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _inside = runtime.enter();
    let mut monitor = Monitor::new(config).unwrap();
    assert!(monitor.is_event_driven());
    monitor.cycle(Instant::now()).unwrap();
    assert_eq!(monitor.watched(), 1);

    let _guard = log_as_the_binary_does();

    // Another thread swings the target across the limit and back, over and over, until
    // enough events were measured.
    let done = Arc::new(AtomicBool::new(false));
    let enough = Arc::new(AtomicBool::new(false));
    let driver = std::thread::spawn({
        let (done, enough) = (Arc::clone(&done), Arc::clone(&enough));
        move || {
            for _ in 0..1500 {
                if enough.load(Ordering::SeqCst) {
                    break;
                }
                target.grow(swing);
                target.madvise(swing);
            }
            done.store(true, Ordering::SeqCst);
            target
        }
    });

    let mut measured_from = None;
    loop {
        let finished = done.load(Ordering::SeqCst);
        while monitor.handle_events() {}
        let handled = monitor.events_handled();
        if measured_from.is_none() && handled >= WARM_UP {
            measured_from = Some((handled, allocations()));
        }
        if measured_from.is_some_and(|(warm, _)| handled >= warm + MEASURED) {
            enough.store(true, Ordering::SeqCst);
        }
        if finished {
            // The driver is done and everything it caused has been handled.
            while monitor.handle_events() {}
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let (warm, before) = measured_from.expect("events arrived");
    let allocated = allocations() - before;
    let measured = monitor.events_handled() - warm;
    eprintln!("handled {measured} kernel events after warm-up, {allocated} allocations");
    assert!(measured >= MEASURED, "only {measured} events after warm-up");
    assert_eq!(
        allocated, 0,
        "{allocated} allocations while handling {measured} kernel events"
    );

    let mut target = driver.join().unwrap();
    assert_eq!(target.pid(), target_pid);
    assert!(
        !target.signals_of(target_pid).is_empty(),
        "breaches were signalled"
    );
}

#[test]
fn admitting_processes_under_a_share_of_their_cgroup_limit_allocates_nothing() {
    // A limit worked out per process (its cgroup's files read, and followed for changes) and
    // processes that come and go: what a DaemonSet's rules do all day.
    let name = unique_name("mma-cg");
    let mut config = config_for(&name, Signal::TERM, None, SizeSpec::PercentOfCgroup(50.0));
    config.mode = Mode::Poll;
    let mut monitor = Monitor::new(config).unwrap();
    let _guard = log_as_the_binary_does();
    // One look at /proc, with nothing to admit yet, warms the scan up.
    let start = Instant::now();
    monitor.cycle(start).unwrap();
    assert_eq!(monitor.watched(), 0);
    let mut measured = 0;
    for round in 1..=5u64 {
        // Made here (which allocates, in this thread), then admitted by the cycle alone.
        let targets: Vec<Target> = (0..4).map(|_| Target::spawn(&name)).collect();
        let before = allocations();
        let report = monitor.cycle(start + Duration::from_secs(round)).unwrap();
        measured += allocations() - before;
        assert_eq!(
            report.watched,
            targets.len(),
            "the new ones, the gone ones dropped"
        );
    }
    assert_eq!(measured, 0, "{measured} allocations admitting 20 processes");
}

/// Logs as the binary does (into a sink), so formatting the event lines is measured too.
fn log_as_the_binary_does() -> tracing::subscriber::DefaultGuard {
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::set_default(subscriber)
}

/// One rule: processes named `name*` over `limit` get `signal`, again every `repeat`.
fn config_for(name: &str, signal: Signal, repeat: Option<Duration>, limit: SizeSpec) -> Config {
    let matcher = Matcher::new(MatchMode::Prefix, name).unwrap();
    let mut rule = Rule::new("test", Selector::name(matcher), limit);
    rule.signal = signal;
    rule.repeat = repeat;
    // Leak trends on: each reading goes to the trend (poll mode's waypoints).
    rule.leak = Some(Leak {
        horizon: Duration::from_secs(3600),
        warmup: Duration::ZERO,
        sustain: Duration::from_secs(1),
    });
    Config::new(RuleSet::new(vec![rule]).unwrap())
}

#[test]
fn steady_cycles_under_a_rule_by_user_with_exclusions_allocate_nothing() {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let name = unique_name("mms-al");
    let mut quiet: Vec<Target> = (0..3).map(|_| Target::spawn(&name)).collect();
    for target in &mut quiet {
        target.grow(4);
    }
    let mut over = Target::spawn(&name);
    over.grow(48);
    let mut left_out = Target::spawn(&format!("{name}x"));
    left_out.grow(48);

    let exclude = Exclude {
        names: vec![Matcher::new(MatchMode::Exact, &format!("{name}x")).unwrap()],
        regexes: vec![Matcher::new(MatchMode::Regex, "^never-this-[0-9]+$").unwrap()],
        users: vec![uid.wrapping_add(1)],
        cgroups: vec![CgroupPath::parse("/mms-no-such.slice").unwrap()],
    };
    let selector = Selector {
        matcher: Some(Matcher::new(MatchMode::Prefix, &name).unwrap()),
        users: vec![uid],
        exclude,
        ..Selector::default()
    };
    let mut rule = Rule::new("by-user", selector, SizeSpec::Bytes(32 << 20));
    // Realtime signals queue: every signal sent is counted once. A repeat every cycle: each
    // cycle logs a line with the uid and the user.
    let signal: Signal = "RTMIN+1".parse().unwrap();
    rule.signal = signal;
    rule.repeat = Some(Duration::from_secs(1));
    let mut config = Config::new(RuleSet::new(vec![rule]).unwrap());
    config.mode = Mode::Poll;
    let mut monitor = Monitor::new(config).unwrap();
    let _guard = log_as_the_binary_does();

    // The four selected are watched, not the one left out; one is over, and signalled.
    let expected = steady_cycles_allocate_nothing(&mut monitor, 4);
    assert!(over.wait_signals(signal.number(), expected));
    assert!(left_out.signals().is_empty());
}

#[test]
fn steady_cycles_signalling_a_whole_process_group_allocate_nothing() {
    use std::os::unix::process::CommandExt as _;
    let name = unique_name("mma-pg");
    // A group of its own (the test's is the monitor's, which is never signalled), its two
    // children forked before it grows: watched too, under the limit.
    let mut over = Target::spawn_with(&name, |command| {
        command.process_group(0);
    });
    let children = [over.fork(), over.fork()];
    over.grow(48);
    let signal: Signal = "RTMIN+1".parse().unwrap();
    let mut config = config_for(
        &name,
        signal,
        Some(Duration::from_secs(1)),
        SizeSpec::Bytes(32 << 20),
    );
    let mut rule = config.rules.all()[0].clone();
    rule.act_on = ActOn::ProcessGroup;
    config.rules = RuleSet::new(vec![rule]).unwrap();
    config.mode = Mode::Poll;
    let mut monitor = Monitor::new(config).unwrap();
    let _guard = log_as_the_binary_does();

    // Each cycle walks /proc for the group and signals all three.
    let expected = steady_cycles_allocate_nothing(&mut monitor, 3);
    assert!(over.wait_signals(signal.number(), expected));
    for child in children {
        assert_eq!(over.signals_of(child).len(), expected, "child {child}");
    }
}

#[test]
fn steady_cycles_judging_a_group_over_its_budget_allocate_nothing() {
    let name = unique_name("mma-gb");
    let mut members: Vec<Target> = (0..3).map(|_| Target::spawn(&name)).collect();
    for member in &mut members {
        member.grow(8);
    }
    let mut largest = Target::spawn(&name);
    largest.grow(16);
    let signal: Signal = "RTMIN+1".parse().unwrap();
    let mut config = config_for(&name, signal, None, SizeSpec::Bytes(1 << 30));
    let mut rule = config.rules.all()[0].clone();
    // Over together, each far under its own limit; settled by each next cycle (a second
    // later), so every cycle reads the group and signals its largest member.
    rule.group = Some(GroupBudget {
        limit: 16 << 20,
        pick: Pick::Largest,
        settle: Duration::from_secs(1),
    });
    config.rules = RuleSet::new(vec![rule]).unwrap();
    config.mode = Mode::Poll;
    let mut monitor = Monitor::new(config).unwrap();
    let _guard = log_as_the_binary_does();

    let (warm_up, measured) = (3, 200);
    let allocated = allocations_in_steady_cycles(&mut monitor, warm_up, measured, |report| {
        assert_eq!((report.watched, report.over, report.signals), (4, 0, 0));
    });
    assert_eq!(
        allocated, 0,
        "{allocated} allocations in {measured} steady cycles"
    );
    assert!(largest.wait_signals(signal.number(), (warm_up + measured) as usize));
    for member in &mut members {
        assert!(member.signals().is_empty());
    }
}

/// 200 cycles of `monitor`, after 3 to warm up, allocate nothing, each watching `watched`
/// processes of which one is over its limit and signalled: how many signals that one is due.
fn steady_cycles_allocate_nothing(monitor: &mut Monitor, watched: usize) -> usize {
    let (warm_up, measured) = (3, 200);
    let allocated = allocations_in_steady_cycles(monitor, warm_up, measured, |report| {
        assert_eq!(
            (report.watched, report.over, report.signals),
            (watched, 1, 1)
        );
    });
    assert_eq!(
        allocated, 0,
        "{allocated} allocations in {measured} steady cycles"
    );
    (warm_up + measured) as usize
}
