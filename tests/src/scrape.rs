//! Scraping the monitor's metrics in tests: a minimal HTTP client, the address the monitor
//! says it serves on, and samples read out of the text.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::{Monitor, patience};

/// `GET path` from the monitor's metrics server, as Prometheus's older scrapers (and curl)
/// ask: status line and body.
pub fn get(address: &str, path: &str) -> (String, String) {
    get_accepting(address, path, "*/*")
}

/// `GET path`, accepting `accept`, over a connection of its own that the server closes once
/// it has answered (`Connection: close`).
pub fn get_accepting(address: &str, path: &str, accept: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the metrics server");
    // Bounded: a scrape that never ends fails the test instead of hanging it.
    stream.set_read_timeout(Some(patience())).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("the whole answer, before the patience runs out");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The metrics server's address, from the monitor's log line saying where it serves.
pub fn served_at(monitor: &mut Monitor) -> String {
    let line = monitor.expect_log(&["serving metrics on"]);
    line.split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the address in the log")
        .to_string()
}

/// The value of the sample `series` (name and labels, as written) in `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.split(' ').next()?.parse().ok())
}
