//! Memory sizes and durations as people type them on a command line, and as logs print them.
//!
//! Sizes are binary (1 M = 1 MiB = 1,048,576 bytes), as in systemd's `MemoryMax=`. A bare
//! number is MiB (`-m 500` is 500 MiB).

use std::fmt;
use std::time::Duration;

/// Why a size or duration could not be parsed. The text is shown to the user after the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(String);

fn err(msg: impl Into<String>) -> UnitError {
    UnitError(msg.into())
}

/// A memory limit as written by the user: an absolute size, a share of the machine's RAM, or a
/// share of the memory limit of each process's cgroup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SizeSpec {
    /// An absolute number of bytes.
    Bytes(u64),
    /// A percentage (0 < p ≤ 100) of total RAM.
    PercentOfRam(f64),
    /// A percentage (0 < p ≤ 100) of the memory limit of the process's cgroup (`memory.max`;
    /// total RAM when no cgroup limits it).
    PercentOfCgroup(f64),
}

impl SizeSpec {
    /// Bytes this limit stands for on a machine with `total_ram` bytes of RAM, for a process
    /// whose cgroup limits it to `cgroup_limit` bytes (`None`: no cgroup limit).
    pub fn resolve(self, total_ram: u64, cgroup_limit: Option<u64>) -> u64 {
        // f64 holds any RAM size exactly enough: the error is far below one page.
        let share = |whole: u64, p: f64| (whole as f64 * p / 100.0) as u64;
        match self {
            SizeSpec::Bytes(bytes) => bytes,
            SizeSpec::PercentOfRam(p) => share(total_ram, p),
            SizeSpec::PercentOfCgroup(p) => {
                share(cgroup_limit.unwrap_or(total_ram).min(total_ram), p)
            }
        }
    }

    /// Whether the limit differs from process to process (it depends on each one's cgroup).
    pub fn is_per_process(self) -> bool {
        matches!(self, SizeSpec::PercentOfCgroup(_))
    }
}

impl fmt::Display for SizeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SizeSpec::Bytes(bytes) => Bytes(bytes).fmt(f),
            SizeSpec::PercentOfRam(p) => write!(f, "{p}% of RAM"),
            SizeSpec::PercentOfCgroup(p) => write!(f, "{p}% of its cgroup's memory limit"),
        }
    }
}

/// Parses a memory size: `500` (MiB), `512K`, `500M`, `2G`, `1.5GiB`, `1T`,
/// `4096B`, `25%` of total RAM, or `90% of cgroup` (of each process's cgroup memory limit).
/// Units are case-insensitive and binary.
pub fn parse_size(text: &str) -> Result<SizeSpec, UnitError> {
    let text = text.trim();
    if let Some((number, rest)) = text.split_once('%') {
        let percent = parse_decimal(number.trim_end(), text)?;
        if percent <= 0.0 || percent > 100.0 {
            return Err(err("a percentage must be above 0% and at most 100%"));
        }
        let rest: Vec<&str> = rest.split_whitespace().collect();
        return match rest[..] {
            [] => Ok(SizeSpec::PercentOfRam(percent)),
            ["of", "cgroup"] | ["cgroup"] => Ok(SizeSpec::PercentOfCgroup(percent)),
            _ => Err(err(
                "a percentage is of RAM ('25%') or of the cgroup's limit ('90% of cgroup')",
            )),
        };
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value = parse_decimal(number, text)?;
    let multiplier: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => 1 << 20,
        "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(err(format!(
                "unknown unit '{other}' (use B, K, M, G, T, or % of RAM)"
            )));
        }
    };
    let bytes = value * multiplier as f64;
    if bytes < 1.0 {
        return Err(err("the size must be at least 1 byte"));
    }
    if bytes >= u64::MAX as f64 {
        return Err(err("the size is too large"));
    }
    Ok(SizeSpec::Bytes(bytes.round() as u64))
}

/// The decimal unit a size was written with (`MB`, `gb`: `KB`, `MB`, `GB`, `TB` in any case),
/// if it was: [`parse_size`] reads it as binary, as the original tool did, which a caution says.
pub fn decimal_unit(text: &str) -> Option<String> {
    let unit = text
        .trim()
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    let unit = unit.trim_start();
    let decimal = ["kb", "mb", "gb", "tb"].contains(&unit.to_ascii_lowercase().as_str());
    decimal.then(|| unit.to_string())
}

/// A finite, non-negative decimal (`12`, `1.5`); `whole` names the full value in errors.
fn parse_decimal(number: &str, whole: &str) -> Result<f64, UnitError> {
    let ok = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && number.bytes().filter(|&b| b == b'.').count() <= 1
        && number != ".";
    if whole.starts_with('-') {
        return Err(err(format!("'{whole}' is negative; it must be above zero")));
    }
    if !ok {
        return Err(err(format!("'{whole}' does not start with a number")));
    }
    number
        .parse::<f64>()
        .map_err(|_| err(format!("'{whole}' does not start with a number")))
}

/// Parses a duration: a bare number is seconds (`2`, `0.5`, as `-i` takes them); otherwise
/// humantime syntax: `250ms`, `3s`, `1m30s`, `2h`. Zero is refused: every duration here is a
/// period or a delay that must pass.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let text = text.trim();
    let number = text.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !text.is_empty();
    let duration = if number || text.starts_with('-') {
        let seconds = parse_decimal(text, text)?;
        Duration::try_from_secs_f64(seconds).map_err(|_| err("the duration is too long"))?
    } else {
        humantime::parse_duration(text).map_err(|e| err(humantime_reason(text, e)))?
    };
    if duration < Duration::from_millis(1) {
        return Err(err("the duration must be at least 1ms"));
    }
    Ok(duration)
}

/// Why humantime refused `text`, in words that need no knowledge of its parser.
fn humantime_reason(text: &str, error: humantime::DurationError) -> String {
    match error {
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("unknown unit '{unit}' (use ms, s, m, h, or a bare number of seconds)")
        }
        humantime::DurationError::NumberOverflow => "the duration is too long".to_string(),
        humantime::DurationError::Empty => "the duration is empty".to_string(),
        _ => format!("'{text}' is not a duration (examples: 2, 250ms, 1m30s)"),
    }
}

/// Displays a byte count the way an operator reads it: `512.0MiB`, `3.2GiB`, `900KiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        if self.0 < 1024 {
            return write!(f, "{}B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1}{}", UNITS[unit])
    }
}

/// Displays a duration compactly (`2s`, `250ms`, `1m30s`) for logs and `--help` echoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period(pub Duration);

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&humantime::format_duration(self.0), f)
    }
}

/// A percentage from 0% to 100% (the `%` optional).
pub fn parse_percent(text: &str) -> Result<u32, String> {
    let number = text.trim().trim_end_matches('%').trim();
    match number.parse::<u32>() {
        Ok(percent @ 0..=100) => Ok(percent),
        _ => Err(format!("'{text}' is not a percentage from 0% to 100%")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn bare_numbers_are_mebibytes() {
        assert_eq!(parse_size("500"), Ok(SizeSpec::Bytes(500 * MIB)));
        assert_eq!(parse_size(" 1 "), Ok(SizeSpec::Bytes(MIB)));
        assert_eq!(parse_size("0.5"), Ok(SizeSpec::Bytes(MIB / 2)));
    }

    #[test]
    fn units_are_binary_and_case_insensitive() {
        assert_eq!(parse_size("512K"), Ok(SizeSpec::Bytes(512 * 1024)));
        assert_eq!(parse_size("512kb"), Ok(SizeSpec::Bytes(512 * 1024)));
        assert_eq!(parse_size("500M"), Ok(SizeSpec::Bytes(500 * MIB)));
        assert_eq!(parse_size("500 MiB"), Ok(SizeSpec::Bytes(500 * MIB)));
        assert_eq!(parse_size("2G"), Ok(SizeSpec::Bytes(2 << 30)));
        assert_eq!(parse_size("1.5GiB"), Ok(SizeSpec::Bytes(3 << 29)));
        assert_eq!(parse_size("4096b"), Ok(SizeSpec::Bytes(4096)));
        assert_eq!(parse_size("1T"), Ok(SizeSpec::Bytes(1 << 40)));
    }

    #[test]
    fn there_is_no_64_gib_cap() {
        assert_eq!(parse_size("70000"), Ok(SizeSpec::Bytes(70_000 * MIB)));
        assert_eq!(parse_size("512G"), Ok(SizeSpec::Bytes(512 << 30)));
    }

    #[test]
    fn percentages_resolve_against_total_ram() {
        assert_eq!(parse_size("25%"), Ok(SizeSpec::PercentOfRam(25.0)));
        assert_eq!(parse_size("2.5 %"), Ok(SizeSpec::PercentOfRam(2.5)));
        assert_eq!(
            SizeSpec::PercentOfRam(25.0).resolve(8 << 30, Some(1 << 30)),
            2 << 30
        );
        assert_eq!(SizeSpec::Bytes(7).resolve(8 << 30, None), 7);
    }

    #[test]
    fn cgroup_percentages_resolve_per_process() {
        assert_eq!(
            parse_size("90% of cgroup"),
            Ok(SizeSpec::PercentOfCgroup(90.0))
        );
        let spec = parse_size("50%cgroup").unwrap();
        assert_eq!(spec, SizeSpec::PercentOfCgroup(50.0));
        assert!(spec.is_per_process());
        assert_eq!(spec.resolve(8 << 30, Some(1 << 30)), 1 << 29);
        // No cgroup limit (or one above RAM): RAM is the limit that bites.
        assert_eq!(spec.resolve(1 << 30, None), 1 << 29);
        assert_eq!(spec.resolve(1 << 30, Some(1 << 40)), 1 << 29);
        assert!(parse_size("90% of disk").is_err());
    }

    #[test]
    fn bad_sizes_say_why() {
        for bad in [
            "", "M", "-5", "5X", "1..5", ".", "0", "0%", "101%", "abc", "5 M B", "1e3", "nan",
            "inf", "5%%",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            parse_size("5X").unwrap_err().to_string(),
            "unknown unit 'x' (use B, K, M, G, T, or % of RAM)"
        );
        assert!(parse_size("99999999999999T").is_err());
    }

    #[test]
    fn durations_accept_bare_seconds_and_units() {
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn bad_durations_are_refused() {
        for bad in [
            "",
            "0",
            "0s",
            "500us",
            "-1",
            "soon",
            "3 parsecs",
            "1..2",
            "9e99",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(
            parse_duration("3x")
                .unwrap_err()
                .to_string()
                .contains("unknown unit 'x'")
        );
    }

    #[test]
    fn displays_are_compact() {
        assert_eq!(Bytes(512).to_string(), "512B");
        assert_eq!(Bytes(900 * 1024).to_string(), "900.0KiB");
        assert_eq!(Bytes(500 * MIB).to_string(), "500.0MiB");
        assert_eq!(Bytes(3 << 29).to_string(), "1.5GiB");
        assert_eq!(Period(Duration::from_millis(250)).to_string(), "250ms");
        assert_eq!(Period(Duration::from_secs(90)).to_string(), "1m 30s");
    }
}
