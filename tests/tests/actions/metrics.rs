//! `--metrics-addr`: Prometheus metrics over HTTP, scraped as Prometheus would and checked by
//! Prometheus's own `promtool check metrics`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use memory_monitor_tests::scrape::{get, get_accepting, sample, served_at};
use memory_monitor_tests::{Monitor, RulesFile, Target, unique_name, usr1_over_32m, wait_until};

/// `promtool check metrics` on `text`: its verdict and what it said.
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; `cargo xtask setup` installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

#[test]
fn metrics_count_what_the_monitor_does_and_promtool_accepts_them_in_poll_mode() {
    metrics_count_what_the_monitor_does_and_promtool_accepts_them("poll");
}

#[test]
#[ignore = "needs root"]
fn metrics_count_what_the_monitor_does_and_promtool_accepts_them_in_ebpf_mode() {
    metrics_count_what_the_monitor_does_and_promtool_accepts_them("ebpf");
}

fn metrics_count_what_the_monitor_does_and_promtool_accepts_them(mode: &str) {
    let name = unique_name("mmm-met");
    let mut target = Target::spawn(&name);
    let mut monitor = Monitor::start(&usr1_over_32m(
        mode,
        &["--metrics-addr", "127.0.0.1:0", &name],
    ));
    let address = served_at(&mut monitor);
    monitor.expect_log(&["watching", &format!("mode={mode}")]);
    let rule = r#"rule="command-line""#;
    let watched = format!("memory_monitor_watched_processes{{{rule}}}");
    assert!(
        wait_until(|| sample(&get(&address, "/metrics").1, &watched) == Some(1.0)),
        "{}",
        get(&address, "/metrics").1
    );

    target.grow(48);
    assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
    let sent = format!(r#"memory_monitor_signals_total{{{rule},signal="SIGUSR1",result="sent"}}"#);
    assert!(wait_until(
        || sample(&get(&address, "/metrics").1, &sent) == Some(1.0)
    ));
    let (status, text) = get(&address, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        sample(&text, &format!("memory_monitor_breaches_total{{{rule}}}")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("memory_monitor_limit_bytes{{{rule}}}")),
        Some((32u64 << 20) as f64),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!(r#"memory_monitor_mode{{mode="{mode}"}}"#)),
        Some(1.0),
        "{text}"
    );
    let failed =
        format!(r#"memory_monitor_signals_total{{{rule},signal="SIGKILL",result="failed"}}"#);
    assert_eq!(sample(&text, &failed), Some(0.0), "{text}");
    match mode {
        "ebpf" => {
            let events = sample(&text, "memory_monitor_kernel_events_total").unwrap();
            assert!(events > 0.0, "{text}");
        }
        _ => {
            let cycles = sample(&text, "memory_monitor_poll_cycle_seconds_count").unwrap();
            assert!(cycles > 0.0, "{text}");
        }
    }
    let (valid, said) = promtool_check(&text);
    assert!(valid, "promtool: {said}\n{text}");
    // Prometheus itself asks for OpenMetrics, and gets it.
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5";
    let open_metrics = get_accepting(&address, "/metrics", accept).1;
    assert!(open_metrics.ends_with("# EOF\n"), "{open_metrics}");
    assert!(open_metrics.contains("# TYPE memory_monitor_breaches counter\n"));

    assert_eq!(get(&address, "/nothing").0, "HTTP/1.1 404 Not Found");
    // The loop itself answers the liveness check.
    assert_eq!(
        get(&address, "/healthz"),
        ("HTTP/1.1 200 OK".to_string(), "ok\n".to_string())
    );
    assert!(monitor.stop().success());
}

/// A monitor in poll mode watching `name` (over 1G) with metrics on a port of loopback's,
/// and that port's address.
fn serving(name: &str) -> (Monitor, String) {
    let mut monitor = Monitor::start(&[
        "--mode",
        "poll",
        "-m",
        "1G",
        "--metrics-addr",
        "127.0.0.1:0",
        name,
    ]);
    let address = served_at(&mut monitor);
    (monitor, address)
}

#[test]
fn idle_and_slow_clients_do_not_hold_up_a_scrape_and_reloads_are_counted_from_zero() {
    let (monitor, address) = serving(&unique_name("mmm-idle"));
    // Clients that connect and never send a request...
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    // ...and ones that send theirs a byte at a time, never finishing it (a server that waits
    // for each in turn would never get to the scrape).
    let stop = Arc::new(AtomicBool::new(false));
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(&address).unwrap();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let request = b"GET /metrics HTTP/1.1\r\nX-Slow: ".iter();
                for byte in request.chain(std::iter::repeat(&b'x')) {
                    if stop.load(Ordering::Relaxed) || stream.write_all(&[*byte]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();

    let (status, text) = get(&address, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    // Before any reload, both outcomes are there at zero: increase() sees the first failure.
    for result in ["ok", "failed"] {
        let series = format!(r#"memory_monitor_config_reloads_total{{result="{result}"}}"#);
        assert_eq!(sample(&text, &series), Some(0.0), "{text}");
    }

    stop.store(true, Ordering::Relaxed);
    for client in slow {
        client.join().unwrap();
    }
    drop(idle);
    assert!(monitor.stop().success());
}

/// The liveness probe's attack: whoever reaches the port holds 64 connections open without
/// sending anything (and opens more as they are closed). `/healthz` is still answered, by the
/// loop, within the probe's one-second timeout, and so are scrapes.
#[test]
fn healthz_answers_within_a_second_while_64_idle_connections_are_held() {
    let (monitor, address) = serving(&unique_name("mmm-held"));
    let mut held: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    for round in 0..3 {
        // The kubelet's probe: a fresh connection, one second to answer.
        let mut probe = TcpStream::connect(&address).unwrap();
        probe
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        write!(
            probe,
            "GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        let read = probe.read_to_string(&mut answer);
        assert!(
            read.is_ok() && answer.starts_with("HTTP/1.1 200 OK"),
            "round {round}: {read:?} {answer:?}"
        );
        assert_eq!(get(&address, "/metrics").0, "HTTP/1.1 200 OK");
        // The attacker opens as many again.
        held.extend((0..64).map(|_| TcpStream::connect(&address).unwrap()));
    }
    drop(held);
    assert!(monitor.stop().success());
}

#[test]
fn skipped_processes_are_a_level_not_counted_again_each_cycle() {
    let name = unique_name("mmm-skip");
    let _targets: Vec<Target> = (0..3).map(|_| Target::spawn(&name)).collect();
    let mut monitor = Monitor::start(&[
        "--mode",
        "poll",
        "-m",
        "1G",
        "-i",
        "100ms",
        "-v",
        "--max-processes",
        "1",
        "--metrics-addr",
        "127.0.0.1:0",
        &name,
    ]);
    let address = served_at(&mut monitor);
    monitor.expect_log(&["checked", "watched=1", "skipped=2"]);
    // Several more looks at the same three processes.
    monitor.expect_more("checked", 5);
    let text = get(&address, "/metrics").1;
    assert_eq!(
        sample(&text, "memory_monitor_skipped_processes"),
        Some(2.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE memory_monitor_skipped_processes gauge\n"),
        "{text}"
    );
    let (valid, said) = promtool_check(&text);
    assert!(valid, "promtool: {said}\n{text}");
    assert!(monitor.stop().success());
}

#[test]
fn a_port_in_use_is_a_clear_error_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let (status, log) = memory_monitor_tests::run_monitor(&serving_at(&address, "some-name"));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("cannot serve metrics on {address}")) && log.contains("in use"),
        "{log}"
    );
}

#[test]
fn every_rule_has_its_own_series_and_profile_writes_are_counted() {
    let (small, large) = (unique_name("mmm-sm"), unique_name("mmm-lg"));
    let dir = std::env::temp_dir().join(unique_name("mmm-pd"));
    let rules = RulesFile::new(
        "mmm-rf",
        &format!(
            "[[rule]]\nname = \"small\"\nprefix = \"{small}\"\nmax-memory = \"32M\"\nsignal = \"USR1\"\nrepeat = \"never\"\nprofile-dir = \"{}\"\n\n\
             [[rule]]\nname = \"large\"\nprefix = \"{large}\"\nmax-memory = \"1G\"\nsignal = \"USR2\"\n",
            dir.display()
        ),
    );
    let mut small_target = Target::spawn(&small);
    let _large_target = Target::spawn(&large);
    let mut monitor = Monitor::start(&[
        "--mode",
        "poll",
        "-i",
        "100ms",
        "--config",
        rules.path(),
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    let address = served_at(&mut monitor);
    small_target.grow(48);
    assert!(
        small_target.wait_signal(libc::SIGUSR1),
        "{}",
        monitor.log_text()
    );
    monitor.expect_log(&["profile written"]);
    let written = r#"memory_monitor_profile_writes_total{rule="small",result="written"}"#;
    assert!(wait_until(
        || sample(&get(&address, "/metrics").1, written) == Some(1.0)
    ));
    let text = get(&address, "/metrics").1;
    for (series, value) in [
        (r#"memory_monitor_watched_processes{rule="small"}"#, 1.0),
        (r#"memory_monitor_watched_processes{rule="large"}"#, 1.0),
        (r#"memory_monitor_breaches_total{rule="small"}"#, 1.0),
        (r#"memory_monitor_breaches_total{rule="large"}"#, 0.0),
        (
            r#"memory_monitor_limit_bytes{rule="large"}"#,
            (1u64 << 30) as f64,
        ),
        (
            r#"memory_monitor_signals_total{rule="small",signal="SIGUSR1",result="sent"}"#,
            1.0,
        ),
        (
            r#"memory_monitor_signals_total{rule="large",signal="SIGUSR2",result="sent"}"#,
            0.0,
        ),
        (
            r#"memory_monitor_profile_writes_total{rule="small",result="failed"}"#,
            0.0,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series}:\n{text}");
    }
    let (valid, said) = promtool_check(&text);
    assert!(valid, "promtool: {said}\n{text}");
    assert!(monitor.stop().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs root"]
fn root_serves_metrics_on_a_privileged_port() {
    // A port under 1024 that nothing listens on now.
    let port = (900..1000)
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port under 1024");
    let address = format!("127.0.0.1:{port}");
    let name = unique_name("mmm-priv");
    let mut monitor = Monitor::start(&serving_at(&address, &name));
    // Bound before the monitor dropped CAP_NET_BIND_SERVICE.
    assert_eq!(served_at(&mut monitor), address, "{}", monitor.log_text());
    let (status, body) = get(&address, "/metrics");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("memory_monitor_"), "{body}");
    assert!(monitor.stop().success());
}

/// A poll-mode monitor of `name` at 1G, serving metrics at `address`.
fn serving_at<'a>(address: &'a str, name: &'a str) -> [&'a str; 7] {
    [
        "--mode",
        "poll",
        "-m",
        "1G",
        "--metrics-addr",
        address,
        name,
    ]
}

#[test]
fn the_monitor_s_own_cost_is_in_its_standard_process_metrics() {
    let name = unique_name("mmm-own");
    let targets: Vec<Target> = (0..20).map(|_| Target::spawn(&name)).collect();
    let (monitor, address) = serving(&name);
    let watched = r#"memory_monitor_watched_processes{rule="command-line"}"#;
    assert!(wait_until(
        || sample(&get(&address, "/metrics").1, watched) == Some(targets.len() as f64)
    ));
    let pid = monitor.pid();
    let text = get(&address, "/metrics").1;
    let own = |series| sample(&text, series).unwrap_or_else(|| panic!("{series}: {text}"));
    // A pidfd per watched process: the descriptors are the monitor's own, give or take the
    // scrape's connection.
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as f64;
    let open = own("process_open_fds");
    assert!(
        open >= targets.len() as f64 && (open - fds).abs() <= 3.0,
        "{open} against {fds}"
    );
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let max: f64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap();
    assert_eq!(own("process_max_fds"), max);
    let resident = memory_monitor_tests::kib_field(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap(),
        "VmRSS",
    ) as f64;
    let said = own("process_resident_memory_bytes");
    assert!(
        said > resident / 2.0 && said < resident * 2.0,
        "{said} against {resident}"
    );
    // CPU time: at most what the kernel says the monitor has used by now (in clock ticks).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let cpu = own("process_cpu_seconds_total");
    // SAFETY: sysconf has no memory-safety preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    assert!(
        cpu > 0.0 && cpu <= (ticks + 2.0) / per_second,
        "{cpu} against {ticks} ticks"
    );
    assert!(monitor.stop().success());
}

#[test]
#[ignore = "needs root"]
fn bpf_stats_count_the_rss_program_s_runs_only_when_asked() {
    // The RSS program's name depends on the kernel's tracepoint (`rss_stat_btf`, or
    // `rss_stat_btf_count` where it passes the count): any `rss_stat` program's series.
    let runs = r#"memory_monitor_bpf_program_runs_total{program="rss_stat_btf"#;
    let time = r#"memory_monitor_bpf_program_run_seconds_total{program="rss_stat_btf"#;
    let program_sample = |text: &str, prefix: &str| {
        text.lines()
            .filter(|line| line.starts_with(prefix))
            .find_map(|line| sample(text, line.split_once(' ')?.0))
    };
    for asked in [true, false] {
        let name = unique_name("mmm-bst");
        let mut target = Target::spawn(&name);
        let mut args = vec![
            "--mode",
            "ebpf",
            "--attach",
            "tp-btf",
            "-m",
            "1G",
            "--metrics-addr",
            "127.0.0.1:0",
        ];
        if asked {
            args.push("--bpf-stats");
        }
        args.push(&name);
        let mut monitor = Monitor::start(&args);
        let address = served_at(&mut monitor);
        monitor.expect_log(&["watching", "mode=ebpf"]);
        let before = program_sample(&get(&address, "/metrics").1, runs);
        target.grow(16);
        let text = get(&address, "/metrics").1;
        match asked {
            true => {
                let (before, after) = (before.unwrap(), program_sample(&text, runs).unwrap());
                // 16 MiB of page faults: one run at least per batch of pages the kernel counts.
                assert!(after > before, "{before} then {after}: {text}");
                assert!(program_sample(&text, time).unwrap() > 0.0, "{text}");
            }
            false => {
                assert_eq!(
                    (before, program_sample(&text, runs)),
                    (None, None),
                    "{text}"
                );
                assert_eq!(program_sample(&text, time), None, "{text}");
            }
        }
        assert!(monitor.stop().success());
    }
}
