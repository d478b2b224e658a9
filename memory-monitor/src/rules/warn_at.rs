//! The warning level (`warn-at`): a size, or a share of the rule's limit, under which a
//! process is quiet and over which it is warned about once, before any signal is due, so an
//! operator hears of a process on its way to the limit while there is still time to act.

use std::fmt;

use crate::units::{self, Bytes, SizeSpec};

/// Where a rule's warning level is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WarnAt {
    /// An absolute number of bytes.
    Bytes(u64),
    /// A percentage (0 < p < 100) of the rule's limit for the process.
    PercentOfLimit(f64),
}

impl WarnAt {
    /// `80%` (of the limit), or a size as `max-memory` takes one (`400M`); a share of RAM or
    /// of a cgroup is not a warning level (a percentage is of the limit).
    pub fn parse(text: &str) -> Result<WarnAt, String> {
        let text = text.trim();
        if let Some(number) = text.strip_suffix('%') {
            return match number.trim().parse::<f64>() {
                Ok(percent) if percent > 0.0 && percent < 100.0 => {
                    Ok(WarnAt::PercentOfLimit(percent))
                }
                _ => Err(format!(
                    "'{text}' is not a share of the limit above 0% and under 100% (80%)"
                )),
            };
        }
        match units::parse_size(text) {
            Ok(SizeSpec::Bytes(bytes)) => Ok(WarnAt::Bytes(bytes)),
            Ok(_) => Err(format!(
                "'{text}': a percentage is of the rule's limit, written alone (80%)"
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The warning level in bytes for a process whose limit is `limit`: `None` when it is not
    /// under the limit (a size at or above a limit that differs from process to process), as
    /// a warning that came with the breach would say nothing the breach does not.
    pub(crate) fn level(self, limit: u64) -> Option<u64> {
        let level = match self {
            WarnAt::Bytes(bytes) => bytes,
            WarnAt::PercentOfLimit(p) => (limit as f64 * p / 100.0) as u64,
        };
        (level < limit).then_some(level)
    }
}

impl fmt::Display for WarnAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WarnAt::Bytes(bytes) => Bytes(bytes).fmt(f),
            WarnAt::PercentOfLimit(p) => write!(f, "{p}% of the limit"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_warning_level_is_a_size_or_a_share_of_the_limit() {
        assert_eq!(WarnAt::parse("80%"), Ok(WarnAt::PercentOfLimit(80.0)));
        assert_eq!(WarnAt::parse(" 12.5 % "), Ok(WarnAt::PercentOfLimit(12.5)));
        assert_eq!(WarnAt::parse("400M"), Ok(WarnAt::Bytes(400 * MIB)));
        assert_eq!(WarnAt::parse("400"), Ok(WarnAt::Bytes(400 * MIB)));
        for bad in ["100%", "0%", "-5%", "x%", "80% of cgroup", "lots", ""] {
            assert!(WarnAt::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_level_is_under_the_limit_or_none() {
        assert_eq!(
            WarnAt::PercentOfLimit(80.0).level(100 * MIB),
            Some(80 * MIB)
        );
        assert_eq!(WarnAt::Bytes(50 * MIB).level(100 * MIB), Some(50 * MIB));
        assert_eq!(WarnAt::Bytes(100 * MIB).level(100 * MIB), None);
        assert_eq!(WarnAt::Bytes(200 * MIB).level(100 * MIB), None);
    }
}
