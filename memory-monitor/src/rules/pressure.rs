//! Triggers that fire without any process crossing its limit (`on-pressure`, `on-high`): memory
//! pressure building on the host or in a rule's cgroup while every process stays under its own
//! limit, and a cgroup held at its `memory.high`, its processes throttled into reclaim. Both
//! are heard from the kernel as they happen (see `monitor::pressure`); this is how a rule says
//! them and what is done when one fires (`pressure-action`).

use std::fmt;
use std::time::Duration;

use crate::rules::budget::Pick;
use crate::units;

/// The shortest window the kernel takes for a PSI trigger.
const WINDOW_MIN: Duration = Duration::from_millis(500);
/// The longest.
const WINDOW_MAX: Duration = Duration::from_secs(10);

/// Which of PSI's two lines a trigger watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// `some`: time in which at least one task was stalled on memory.
    Some,
    /// `full`: time in which every non-idle task was stalled on memory at once.
    Full,
}

/// `on-pressure`: fire when the stall time within a window passes a threshold (PSI's own
/// trigger, `some 150000 1000000`: 150 ms of stall within any 1 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PressureTrigger {
    /// `some` or `full`.
    pub stall: Stall,
    /// Stall time within the window that fires it.
    pub threshold: Duration,
    /// The window (500 ms to 10 s).
    pub window: Duration,
}

impl PressureTrigger {
    /// `some:150ms/1s` or `full:1s/10s`: which line, then the stall time and the window as
    /// durations (`-i` takes them: `2` is seconds).
    pub fn parse(text: &str) -> Result<PressureTrigger, String> {
        let text = text.trim();
        let form = "as some:STALL/WINDOW or full:STALL/WINDOW (some:150ms/1s)";
        let (stall, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("'{text}': give it {form}"))?;
        let stall = match stall.trim() {
            "some" => Stall::Some,
            "full" => Stall::Full,
            other => return Err(format!("'{other}' is not some or full: give it {form}")),
        };
        let (threshold, window) = rest
            .split_once('/')
            .ok_or_else(|| format!("'{text}': give it {form}"))?;
        let duration = |t: &str| units::parse_duration(t).map_err(|e| format!("'{text}': {e}"));
        let (threshold, window) = (duration(threshold)?, duration(window)?);
        if !(WINDOW_MIN..=WINDOW_MAX).contains(&window) {
            return Err(format!(
                "'{text}': the kernel takes a window from 500ms to 10s"
            ));
        }
        if threshold > window {
            return Err(format!(
                "'{text}': the stall time must be at most the window"
            ));
        }
        // The kernel counts in microseconds.
        if threshold.subsec_nanos() % 1000 != 0 || window.subsec_nanos() % 1000 != 0 {
            return Err(format!("'{text}': give whole microseconds"));
        }
        Ok(PressureTrigger {
            stall,
            threshold,
            window,
        })
    }

    /// What is written to a pressure file to make the trigger (`some 150000 1000000`, with
    /// its NUL: the kernel overwrites the write's last byte with one), into `buf`; no
    /// allocation.
    pub(crate) fn kernel_text<'b>(&self, buf: &'b mut [u8; 64]) -> &'b [u8] {
        use std::io::Write as _;
        let line = match self.stall {
            Stall::Some => "some",
            Stall::Full => "full",
        };
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        let _ = write!(
            cursor,
            "{line} {} {}\0",
            self.threshold.as_micros(),
            self.window.as_micros()
        );
        let len = cursor.position() as usize;
        &buf[..len]
    }
}

impl fmt::Display for PressureTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = match self.stall {
            Stall::Some => "some",
            Stall::Full => "full",
        };
        write!(
            f,
            "{line}:{}/{}",
            units::Period(self.threshold),
            units::Period(self.window)
        )
    }
}

/// What a rule does when its pressure or `memory.high` trigger fires (`pressure-action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PressureAction {
    /// Say it (the line, the metric, the hook), and signal nothing.
    #[default]
    Report,
    /// Say it, and send the rule's signal to the largest process it watches there.
    SignalLargest,
    /// Say it, and send the rule's signal to the process it watches there that grew the most
    /// per second since its last reading.
    SignalFastest,
}

impl PressureAction {
    /// Which process it signals, if it signals one.
    pub(crate) fn pick(self) -> Option<Pick> {
        match self {
            PressureAction::Report => None,
            PressureAction::SignalLargest => Some(Pick::Largest),
            PressureAction::SignalFastest => Some(Pick::Fastest),
        }
    }
}

impl crate::choice::Choice for PressureAction {
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (
            PressureAction::Report,
            "report",
            "Log, count and run the hook",
        ),
        (
            PressureAction::SignalLargest,
            "signal-largest",
            "And signal the largest process the rule watches there",
        ),
        (
            PressureAction::SignalFastest,
            "signal-fastest",
            "And signal the fastest-growing process the rule watches there",
        ),
    ];
}

impl fmt::Display for PressureAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::choice::write_name(*self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_is_a_line_a_stall_time_and_a_window() {
        let trigger = PressureTrigger::parse("some:150ms/1s").unwrap();
        assert_eq!(trigger.stall, Stall::Some);
        assert_eq!(trigger.threshold, Duration::from_millis(150));
        assert_eq!(trigger.window, Duration::from_secs(1));
        let mut buf = [0; 64];
        assert_eq!(trigger.kernel_text(&mut buf), b"some 150000 1000000\0");
        let full = PressureTrigger::parse(" full:1/2 ").unwrap();
        assert_eq!(full.kernel_text(&mut buf), b"full 1000000 2000000\0");
        assert_eq!(
            PressureTrigger::parse(&trigger.to_string()).unwrap(),
            trigger
        );
    }

    #[test]
    fn what_the_kernel_would_refuse_is_refused_with_the_reason() {
        for (text, why) in [
            ("some150ms/1s", "give it as some:STALL/WINDOW"),
            ("most:150ms/1s", "'most' is not some or full"),
            ("some:150ms", "give it as some:STALL/WINDOW"),
            ("some:150ms/100ms", "a window from 500ms to 10s"),
            ("some:1s/11s", "a window from 500ms to 10s"),
            ("some:2s/1s", "at most the window"),
            ("some:0/1s", "at least 1ms"),
            ("some:x/1s", "'some:x/1s': "),
        ] {
            let error = PressureTrigger::parse(text).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
        }
    }
}
