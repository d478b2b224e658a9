//! Log set-up: quiet by default (the start line, breaches, problems), one line per event, text
//! or JSON on stderr.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;

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
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match settings.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
