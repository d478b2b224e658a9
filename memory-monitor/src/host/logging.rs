//! Log set-up: quiet by default (the start line, breaches, problems), one line per event, text
//! or JSON on stderr. Text written to the journal (a systemd service's stderr) carries each
//! line's priority as a `<N>` prefix instead of a level and a timestamp, which the journal
//! keeps itself. Text fields are logfmt: a value that could be read as more than one field
//! (a process named `v pid=1`) is quoted.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::os::fd::AsFd;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{self, DefaultVisitor, FormatEvent, FormatFields, Writer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

use crate::choice::{self, Choice};

/// Log verbosity and format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogSettings {
    /// 0 = info (start line and breaches), +1 per `-v`, -1 per `-q`.
    pub(crate) verbosity: i8,
    /// Text or JSON lines.
    pub(crate) format: LogFormat,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Human-readable lines with key=value fields.
    Text,
    /// One JSON object per line.
    Json,
}

impl Choice for LogFormat {
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (
            LogFormat::Text,
            "text",
            "Human-readable lines with key=value fields",
        ),
        (LogFormat::Json, "json", "One JSON object per line"),
    ];
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        choice::write_name(*self, f)
    }
}

/// Installs the global subscriber for `settings`.
pub(crate) fn init(settings: LogSettings) {
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
                        .fmt_fields(LogfmtFields)
                        .event_format(JournalPriority(format))
                        .with_filter(targets),
                )
                .init()
        }
        LogFormat::Text => tracing_subscriber::registry()
            .with(layer.fmt_fields(LogfmtFields).with_filter(targets))
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

/// Text fields as logfmt, as the default formatter writes them (the message first and bare,
/// then `key=value`), except that a value holding a space, `=`, `"` or a control character is
/// quoted, with `"` and `\` escaped: a process name, an action or a result can then never read
/// as fields of its own. JSON keeps plain strings.
struct LogfmtFields;

impl<'writer> MakeVisitor<Writer<'writer>> for LogfmtFields {
    type Visitor = LogfmtVisitor<'writer>;

    fn make_visitor(&self, writer: Writer<'writer>) -> LogfmtVisitor<'writer> {
        LogfmtVisitor(DefaultVisitor::new(writer, true))
    }
}

/// The default visitor, handed each value quoted when it has to be.
struct LogfmtVisitor<'writer>(DefaultVisitor<'writer>);

impl Visit for LogfmtVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.0.record_debug(field, value),
            _ => self.0.record_debug(field, &Logfmt(value)),
        }
    }

    /// Strings are quoted and escaped already (as Rust's `Debug` writes them).
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.record_str(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.record_i64(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.record_u64(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.record_bool(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

impl VisitOutput<fmt::Result> for LogfmtVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.0.finish()
    }
}

impl VisitFmt for LogfmtVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        self.0.writer()
    }
}

/// A field's value as logfmt: as it is when that reads as one value, else quoted and escaped.
/// Formatted twice (once to look, once to write) rather than into a buffer: no allocation,
/// whatever its length.
struct Logfmt<'a>(&'a dyn fmt::Debug);

impl fmt::Debug for Logfmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut look = Look::default();
        write!(look, "{:?}", self.0)?;
        if look.written && !look.quote {
            return write!(f, "{:?}", self.0);
        }
        f.write_char('"')?;
        write!(Escaping(f), "{:?}", self.0)?;
        f.write_char('"')
    }
}

/// What a value holds: anything at all, and anything that would end it or start another field.
#[derive(Default)]
struct Look {
    written: bool,
    quote: bool,
}

impl fmt::Write for Look {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.written |= !text.is_empty();
        self.quote |= text
            .chars()
            .any(|c| c == '=' || c == '"' || c.is_whitespace() || c.is_control());
        Ok(())
    }
}

/// Writes through, escaped for the inside of logfmt's quotes.
struct Escaping<'a, 'f>(&'a mut fmt::Formatter<'f>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for c in text.chars() {
            match c {
                '"' | '\\' => {
                    self.0.write_char('\\')?;
                    self.0.write_char(c)?;
                }
                c if c.is_control() => write!(self.0, "{}", c.escape_default())?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// An error and its causes on one line (`a: b: c`), for a log line.
pub(crate) fn one_line(error: &dyn std::error::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn logfmt(value: fmt::Arguments<'_>) -> String {
        format!("{:?}", Logfmt(&value))
    }

    #[test]
    fn a_value_is_quoted_only_when_it_would_not_read_as_one() {
        assert_eq!(logfmt(format_args!("my-app")), "my-app");
        assert_eq!(logfmt(format_args!("500.1MiB")), "500.1MiB");
        // Escaped already by the name's own display, and one value as it is.
        assert_eq!(logfmt(format_args!(r"q\xff\u{{1b}}")), r"q\xff\u{1b}");
        assert_eq!(logfmt(format_args!("v pid=1")), r#""v pid=1""#);
        assert_eq!(logfmt(format_args!("a=b")), r#""a=b""#);
        assert_eq!(
            logfmt(format_args!(r#"say "hi" \o/"#)),
            r#""say \"hi\" \\o/""#
        );
        assert_eq!(logfmt(format_args!("tab\there")), r#""tab\there""#);
        assert_eq!(logfmt(format_args!("")), r#""""#);
    }
}
