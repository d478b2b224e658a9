//! Log set-up: quiet by default (the start line, breaches, problems), one line per event, text
//! or JSON on stderr.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber for `settings`.
pub fn init(settings: LogSettings) {
    let level = match settings.verbosity {
        ..=-2 => LevelFilter::ERROR,
        -1 => LevelFilter::WARN,
        0 => LevelFilter::INFO,
        1 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    // -v is about this tool's events; the libraries' own chatter (aya's loader) stays at
    // warnings. The BPF programs' messages (aya-log) are ours.
    let targets = Targets::new()
        .with_default(level.min(LevelFilter::WARN))
        .with_target("memory_monitor", level)
        .with_target("memory_monitor_ebpf", level);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match settings.format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(layer.with_filter(targets))
            .init(),
        LogFormat::Json => {
            let layer = layer.json().flatten_event(true);
            tracing_subscriber::registry()
                .with(layer.with_filter(targets))
                .init()
        }
    }
}

/// An error and its causes on one line (`a: b: c`), for a log line.
pub fn one_line(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
