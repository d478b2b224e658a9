//! Log set-up: quiet by default (the start line, breaches, problems), one line per event, text
//! or JSON on stderr. Text written to the journal (a systemd service's stderr) carries each
//! line's priority as a `<N>` prefix instead of a level and a timestamp, which the journal
//! keeps itself.

use std::fmt;
use std::io::IsTerminal;
use std::os::fd::AsFd;

use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

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
        LogFormat::Text if stderr_is_journal() => {
            let format = format::Format::default()
                .without_time()
                .with_level(false)
                .with_target(false);
            tracing_subscriber::registry()
                .with(
                    layer
                        .event_format(JournalPriority(format))
                        .with_filter(targets),
                )
                .init()
        }
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

/// Whether stderr is a stream to the journal: systemd says so in `JOURNAL_STREAM` (the
/// stream's device and inode), which a program started from the service with its stderr
/// redirected elsewhere inherits, hence the comparison.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = rustix::fs::fstat(std::io::stderr().as_fd()) else {
        return false;
    };
    let parsed = stream
        .to_str()
        .and_then(|s| s.split_once(':'))
        .and_then(|(dev, ino)| Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?)));
    parsed == Some((stat.st_dev, stat.st_ino))
}

/// Prefixes each line with its syslog priority (`<3>` error … `<7>` debug), which the journal
/// strips and stores, so `journalctl -p warning` finds the breaches.
struct JournalPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(context, writer, event)
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
