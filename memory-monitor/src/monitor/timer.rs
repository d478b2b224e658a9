//! A one-shot deadline timer with microsecond precision, for eBPF mode's timers.
//!
//! tokio's timers round up to whole milliseconds, which is more than the whole budget of a
//! kernel report's follow-up (see `monitor`'s report gap). A `timerfd` on `CLOCK_MONOTONIC`
//! (the clock [`Instant`] reads on Linux) fires when asked, costs nothing while disarmed, and
//! is waited on like the ring buffer.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Instant;

use rustix::time::{
    ClockId, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, clock_gettime,
    timerfd_create, timerfd_settime,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A deadline timer: [`set`](Self::set) it, then await [`expired`](Self::expired).
#[derive(Debug)]
pub(crate) struct DeadlineTimer {
    fd: AsyncFd<OwnedFd>,
    /// The deadline the timer is armed for, to skip a system call when it is unchanged.
    armed: Option<Instant>,
}

impl DeadlineTimer {
    /// A disarmed timer (inside a tokio runtime).
    pub(crate) fn new() -> io::Result<DeadlineTimer> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: the AsyncFd owns the OwnedFd: the descriptor stays open and the same.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(DeadlineTimer { fd, armed: None })
    }

    /// Arms the timer for `deadline` (a past one fires at once), or disarms it with `None`.
    pub(crate) fn set(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        if deadline == self.armed {
            return Ok(());
        }
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let it_value = match deadline {
            // Zero disarms; an absolute time already past fires at once.
            None => zero,
            Some(deadline) => {
                let now = clock_gettime(ClockId::Monotonic);
                let ahead = deadline.saturating_duration_since(Instant::now());
                let nanos = now.tv_nsec as u64 + u64::from(ahead.subsec_nanos());
                Timespec {
                    tv_sec: now.tv_sec + ahead.as_secs() as i64 + (nanos / 1_000_000_000) as i64,
                    tv_nsec: (nanos % 1_000_000_000) as _,
                }
            }
        };
        let spec = Itimerspec {
            it_interval: zero,
            it_value,
        };
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::ABSTIME, &spec)?;
        self.armed = deadline;
        Ok(())
    }

    /// Resolves once the armed deadline has passed, and disarms; never while disarmed.
    pub(crate) async fn expired(&mut self) -> io::Result<()> {
        loop {
            let mut ready = self.fd.readable().await?;
            let mut count = [0u8; 8];
            match rustix::io::read(self.fd.get_ref(), &mut count) {
                Ok(_) => {
                    self.armed = None;
                    return Ok(());
                }
                Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                Err(errno) => return Err(errno.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn fires_at_its_deadline_not_before() {
        let mut timer = DeadlineTimer::new().unwrap();
        let deadline = Instant::now() + Duration::from_micros(300);
        timer.set(Some(deadline)).unwrap();
        timer.expired().await.unwrap();
        assert!(Instant::now() >= deadline);
    }

    #[tokio::test]
    async fn a_past_deadline_fires_at_once_and_a_disarmed_timer_never() {
        let mut timer = DeadlineTimer::new().unwrap();
        timer.set(Some(Instant::now())).unwrap();
        timer.expired().await.unwrap();
        timer
            .set(Some(Instant::now() + Duration::from_secs(60)))
            .unwrap();
        assert_ne!(remaining(&timer), Duration::ZERO, "armed");
        // Disarmed, as the kernel holds it: no expiry left to fire at, however long one waits.
        timer.set(None).unwrap();
        assert_eq!(
            remaining(&timer),
            Duration::ZERO,
            "a disarmed timer is still armed"
        );
    }

    /// How long the kernel says the timer has left before it fires; zero when disarmed.
    fn remaining(timer: &DeadlineTimer) -> Duration {
        let spec = rustix::time::timerfd_gettime(timer.fd.get_ref()).unwrap();
        Duration::new(spec.it_value.tv_sec as u64, spec.it_value.tv_nsec as u32)
    }
}
