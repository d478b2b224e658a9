//! Values a rule may hold that are seldom what was meant: each is said, as a warning at start
//! and by `--check-config`, and the rule still runs as written. (A value that can never help,
//! such as a signal that stops the process, is refused instead: see [`super::RuleSpec`].)

use std::time::Duration;

use crate::signal::Signal;
use crate::units::{Bytes, Period, SizeSpec};

/// A limit below this is under what nearly any process holds once started (a shell holds
/// about 4 MiB): every process the rule selects would be signalled.
pub const SMALL_LIMIT: u64 = 4 << 20;

/// A poll interval below this makes the monitor a busy loop over `/proc`.
pub const SHORT_INTERVAL: Duration = Duration::from_millis(100);

/// What a rule's values are cautioned about: a limit of `limit` (`decimal_unit`: the decimal
/// unit it was written with, if any), `signal` sent again every `repeat`.
pub fn of(
    limit: SizeSpec,
    decimal_unit: Option<&str>,
    signal: Signal,
    repeat: Option<Duration>,
) -> Vec<String> {
    let mut cautions = Vec::new();
    if let Some(unit) = decimal_unit {
        let binary = format!("{}iB", &unit[..1].to_ascii_uppercase());
        cautions.push(format!(
            "max-memory: '{unit}' is read as binary ({binary}: 1 M = 1,048,576 bytes), not decimal; write {binary} to say so"
        ));
    }
    let bytes = match limit {
        SizeSpec::Bytes(bytes) => Some(bytes),
        SizeSpec::PercentOfRam(_) => Some(limit.resolve(crate::system::procfs::total_ram(), None)),
        SizeSpec::PercentOfCgroup(_) => None,
    };
    if let Some(bytes) = bytes.filter(|&bytes| bytes < SMALL_LIMIT) {
        cautions.push(format!(
            "max-memory: {} is less than nearly any process holds ({} for a shell): every process the rule selects will be signalled",
            Bytes(bytes),
            Bytes(SMALL_LIMIT)
        ));
    }
    if let (true, Some(period)) = (signal == Signal::KILL, repeat) {
        cautions.push(format!(
            "signal: SIGKILL again every {}: a process SIGKILL did not end is stuck in the kernel, and another SIGKILL does nothing more; set repeat to never",
            Period(period)
        ));
    }
    cautions
}

/// What a poll interval is cautioned about, when the monitor polls.
pub fn of_interval(interval: Duration) -> Option<String> {
    (interval < SHORT_INTERVAL).then(|| {
        format!(
            "--interval {}: polling more often than every {} keeps a CPU busy reading /proc",
            Period(interval),
            Period(SHORT_INTERVAL)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_sensible_rule_is_not_cautioned() {
        let two = Some(Duration::from_secs(2));
        assert!(of(SizeSpec::Bytes(500 * MIB), None, Signal::TERM, two).is_empty());
        assert!(of(SizeSpec::Bytes(500 * MIB), None, Signal::KILL, None).is_empty());
        assert!(of_interval(Duration::from_millis(100)).is_none());
    }

    #[test]
    fn each_doubtful_value_is_named() {
        let two = Some(Duration::from_secs(2));
        let said = |cautions: Vec<String>, part: &str| {
            assert_eq!(cautions.len(), 1, "{cautions:?}");
            assert!(cautions[0].contains(part), "{part} in {cautions:?}");
        };
        said(
            of(SizeSpec::Bytes(500 * MIB), Some("MB"), Signal::TERM, two),
            "'MB' is read as binary (MiB",
        );
        said(of(SizeSpec::Bytes(105), None, Signal::TERM, two), "105B");
        said(
            of(SizeSpec::Bytes(500 * MIB), None, Signal::KILL, two),
            "SIGKILL again every 2s",
        );
        assert!(
            of_interval(Duration::from_millis(1))
                .unwrap()
                .contains("1ms")
        );
    }
}
