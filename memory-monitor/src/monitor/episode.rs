//! A pressure or `memory.high` trigger's episode: from a firing after a quiet spell to the
//! next quiet spell. An episode is said once however often its trigger fires while it lasts,
//! so a flapping trigger, or a process causing pressure at will, cannot flood the log; a
//! signal goes at its start and again no sooner than the rule's `repeat`.

use std::time::{Duration, Instant};

/// An episode ends once its trigger has not fired for this long (or for two of its windows).
pub(super) const EPISODE_QUIET: Duration = Duration::from_secs(10);

/// A trigger's episode: from a firing after a quiet spell to the next quiet spell.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Episode {
    last_fired: Option<Instant>,
    /// When a signal was last tried.
    last_signal: Option<Instant>,
    /// Firings since it started.
    pub(super) fires: u64,
}

impl Episode {
    /// A firing at `now`; whether it starts a new episode (`quiet`: how long without one
    /// ended the last).
    pub(super) fn fire(&mut self, now: Instant, quiet: Duration) -> bool {
        let new = self
            .last_fired
            .is_none_or(|last| now.saturating_duration_since(last) >= quiet);
        if new {
            *self = Episode::default();
        }
        self.last_fired = Some(now);
        self.fires += 1;
        new
    }

    /// Whether a signal is due at `now`: the episode's first, then one `repeat` after the last.
    pub(super) fn signal_due(&self, now: Instant, repeat: Option<Duration>) -> bool {
        match (self.last_signal, repeat) {
            (None, _) => true,
            (Some(last), Some(period)) => now.saturating_duration_since(last) >= period,
            (Some(_), None) => false,
        }
    }

    /// A signal was tried at `now` (whether there was a process to signal or not): the next
    /// is due a `repeat` later.
    pub(super) fn signal_tried(&mut self, now: Instant) {
        self.last_signal = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_is_said_once_however_often_it_fires() {
        let start = Instant::now();
        let quiet = Duration::from_secs(10);
        let mut episode = Episode::default();
        assert!(episode.fire(start, quiet), "the first firing starts one");
        for second in 1..30 {
            let now = start + Duration::from_secs(second);
            assert!(!episode.fire(now, quiet), "fired every second: one episode");
        }
        assert_eq!(episode.fires, 30);
        let later = start + Duration::from_secs(29 + 10);
        assert!(episode.fire(later, quiet), "after a quiet spell, a new one");
        assert_eq!(episode.fires, 1);
    }

    #[test]
    fn a_signal_is_due_at_the_start_and_then_each_repeat() {
        let start = Instant::now();
        let mut episode = Episode::default();
        episode.fire(start, EPISODE_QUIET);
        let repeat = Some(Duration::from_secs(2));
        assert!(episode.signal_due(start, repeat));
        episode.signal_tried(start);
        assert!(!episode.signal_due(start + Duration::from_secs(1), repeat));
        assert!(episode.signal_due(start + Duration::from_secs(2), repeat));
        assert!(!episode.signal_due(start + Duration::from_secs(60), None));
    }
}
