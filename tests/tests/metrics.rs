//! `--metrics-addr`: Prometheus metrics over HTTP, scraped as Prometheus would and checked by
//! Prometheus's own `promtool check metrics`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use memory_monitor_tests::{Monitor, Target, root_or_skip, unique_name, usr1_over_32m, wait_until};

/// `GET path` from the monitor's metrics server, as Prometheus's older scrapers (and curl)
/// ask: status line and body.
fn get(address: &str, path: &str) -> (String, String) {
    get_accepting(address, path, "*/*")
}

/// `GET path`, accepting `accept`.
fn get_accepting(address: &str, path: &str, accept: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the metrics server");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: {accept}\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The value of the sample `series` (name and labels, as written) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.split(' ').next()?.parse().ok())
}

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
fn metrics_count_what_the_monitor_does_and_promtool_accepts_them() {
    let mut modes = vec!["poll"];
    if root_or_skip("metrics in eBPF mode") {
        modes.push("ebpf");
    }
    for mode in modes {
        let name = unique_name("mmm-met");
        let mut target = Target::spawn(&name);
        let mut monitor = Monitor::start(&usr1_over_32m(
            mode,
            &["--metrics-addr", "127.0.0.1:0", &name],
        ));
        let line = monitor.expect_log(&["serving metrics on"]);
        let address = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("the address in the log")
            .to_string();
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
        let sent =
            format!(r#"memory_monitor_signals_total{{{rule},signal="SIGUSR1",result="sent"}}"#);
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
        assert!(monitor.stop().success());
    }
}

#[test]
fn a_port_in_use_is_a_clear_error_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let (status, log) = memory_monitor_tests::run_monitor(&[
        "--mode",
        "poll",
        "-m",
        "1G",
        "--metrics-addr",
        &address,
        "some-name",
    ]);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("cannot serve metrics on {address}")) && log.contains("in use"),
        "{log}"
    );
}
