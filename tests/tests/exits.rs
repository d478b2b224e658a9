//! A watched process may exit at any moment, between any two steps of a cycle: every handle
//! the monitor holds then says so plainly, and nothing reaches another process.

use memory_monitor::action::{Delivery, Dispatch, deliver};
use memory_monitor::matcher::{MatchMode, Matcher};
use memory_monitor::procfs::{ProcRoot, page_size};
use memory_monitor::rules::{Pinned, Rule, RuleSet, Selector};
use memory_monitor::signal::Signal;
use memory_monitor::units::SizeSpec;
use memory_monitor::watch::Watched;
use memory_monitor_tests::{Target, unique_name};
use rustix::io::Errno;

#[test]
fn a_watched_process_that_exits_reads_as_gone_and_is_not_signalled() {
    // With statm held open (poll mode) and read by PID on demand (eBPF mode).
    for hold_statm in [true, false] {
        let name = unique_name("mmx-gn");
        let mut target = Target::spawn(&name);
        target.grow(16);
        let proc = ProcRoot::open().unwrap();
        let rules = rules(Selector::name(
            Matcher::new(MatchMode::Exact, &name).unwrap(),
        ));
        let mut cmdline = vec![0; 4096];
        let watched = Watched::open(&proc, target.pid(), &rules, &mut cmdline, hold_statm)
            .expect("the target is admitted");
        let mut buf = [0u8; 128];
        let rss = watched.rss(&proc, &mut buf, page_size()).expect("alive");
        assert!(rss > 16 << 20, "{rss}");
        assert!(!watched.has_exited());

        target.exit(); // exits and is reaped: its PID is free for reuse
        assert!(watched.has_exited());
        assert_eq!(watched.rss(&proc, &mut buf, page_size()), Err(Errno::SRCH));
        assert_eq!(
            deliver(&watched, Signal::TERM, Dispatch::Send),
            Delivery::Exited
        );
    }
}

#[test]
fn a_process_that_does_not_match_is_not_admitted() {
    let mut target = Target::spawn(&unique_name("mmx-nm"));
    let proc = ProcRoot::open().unwrap();
    let other = rules(Selector::name(
        Matcher::new(MatchMode::Exact, "something-else").unwrap(),
    ));
    let mut cmdline = vec![0; 4096];
    assert!(Watched::open(&proc, target.pid(), &other, &mut cmdline, true).is_err());
    let pinned = rules(Selector {
        pids: vec![Pinned::now(&proc, target.pid()).unwrap()],
        ..Selector::default()
    });
    let watched = Watched::open(&proc, target.pid(), &pinned, &mut cmdline, true).unwrap();
    assert!(watched.is_pinned());
    target.rename("x");
    // The same PID with another start time is another process: not the one named.
    let mut other = Pinned::now(&proc, target.pid()).unwrap();
    other.start_time += 1;
    let elsewhere = rules(Selector {
        pids: vec![other],
        ..Selector::default()
    });
    assert!(Watched::open(&proc, target.pid(), &elsewhere, &mut cmdline, true).is_err());
}

#[test]
fn a_process_that_exited_but_is_not_reaped_reads_as_gone_not_as_empty() {
    // A child of the target, which never reaps it: once killed it stays a zombie.
    let mut target = Target::spawn(&unique_name("mmx-zb"));
    let child = target.fork();
    let proc = ProcRoot::open().unwrap();
    let pinned = rules(Selector {
        pids: vec![Pinned::now(&proc, child).unwrap()],
        ..Selector::default()
    });
    let mut cmdline = vec![0; 4096];
    let watched = Watched::open(&proc, child, &pinned, &mut cmdline, true).unwrap();
    let mut buf = [0u8; 128];
    assert!(
        watched
            .rss(&proc, &mut buf, page_size())
            .is_ok_and(|rss| rss > 0)
    );
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child, libc::SIGKILL) };
    let zombie = memory_monitor_tests::wait_until(|| {
        std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
    });
    assert!(zombie, "the child became a zombie");
    assert_eq!(watched.rss(&proc, &mut buf, page_size()), Err(Errno::SRCH));
}

/// One rule selecting with `selector`, at 1 GiB.
fn rules(selector: Selector) -> RuleSet {
    RuleSet::new(vec![Rule::new("test", selector, SizeSpec::Bytes(1 << 30))]).unwrap()
}
