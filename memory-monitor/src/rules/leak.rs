//! Leak trends (`leak-horizon`, `leak-warmup`, `leak-sustain`): when a rule names a process
//! whose memory is on its way to the limit, hours before it gets there (the fit is the crate's
//! `trend` module).

use std::time::Duration;

use super::spec::SpecError;

/// Default `leak-warmup`: growth in a process's first 10 minutes is its start, not a leak.
pub const DEFAULT_LEAK_WARMUP: Duration = Duration::from_secs(600);
/// Default `leak-sustain`: the growth must have lasted 30 minutes.
pub const DEFAULT_LEAK_SUSTAIN: Duration = Duration::from_secs(1800);

/// A rule's leak-trend settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leak {
    /// A process is named when its projected time to the limit is at most this.
    pub horizon: Duration,
    /// Growth this soon after the process started (or exec'd) is left out.
    pub warmup: Duration,
    /// The growth must have gone on this long, and still go on.
    pub sustain: Duration,
}

impl Leak {
    /// The settings from what was given: none without a horizon, which the other two need.
    pub(crate) fn build(
        horizon: Option<Duration>,
        warmup: Option<Duration>,
        sustain: Option<Duration>,
    ) -> Result<Option<Leak>, SpecError> {
        let Some(horizon) = horizon else {
            for (setting, given) in [("leak-warmup", warmup), ("leak-sustain", sustain)] {
                if given.is_some() {
                    return Err(SpecError::Needs {
                        setting,
                        needs: &["leak-horizon"],
                    });
                }
            }
            return Ok(None);
        };
        for (setting, value) in [("leak-horizon", Some(horizon)), ("leak-sustain", sustain)] {
            if value.is_some_and(|value| value < Duration::from_secs(1)) {
                return Err(SpecError::Invalid {
                    setting,
                    why: "is under a second: give a duration such as 6h or 30m".to_string(),
                });
            }
        }
        Ok(Some(Leak {
            horizon,
            warmup: warmup.unwrap_or(DEFAULT_LEAK_WARMUP),
            sustain: sustain.unwrap_or(DEFAULT_LEAK_SUSTAIN),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_horizon_turns_it_on_with_the_defaults() {
        assert_eq!(Leak::build(None, None, None).unwrap(), None);
        assert_eq!(
            Leak::build(Some(6 * HOUR), None, None).unwrap(),
            Some(Leak {
                horizon: 6 * HOUR,
                warmup: DEFAULT_LEAK_WARMUP,
                sustain: DEFAULT_LEAK_SUSTAIN,
            })
        );
    }

    #[test]
    fn warm_up_or_sustain_without_a_horizon_or_a_zero_duration_is_refused() {
        let needs = Leak::build(None, Some(HOUR), None).unwrap_err();
        assert_eq!(needs.as_options(), "--leak-warmup needs --leak-horizon");
        let needs = Leak::build(None, None, Some(HOUR)).unwrap_err();
        assert_eq!(needs.to_string(), "needs leak-horizon");
        let zero = Leak::build(Some(Duration::ZERO), None, None).unwrap_err();
        assert_eq!(
            zero.as_options(),
            "--leak-horizon is under a second: give a duration such as 6h or 30m"
        );
    }
}
