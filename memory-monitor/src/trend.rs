//! Leak trends: each watched process's growth timeline, as the waypoints it crossed (each a
//! 32nd of its limit, up or down: reported by the kernel side in eBPF mode, crossed by the
//! readings in poll mode), and a robust fit to it that names a process on its way to its limit
//! hours before it gets there. Pure, like the breach state machine: time is passed in, and
//! nothing allocates (the points are a ring of [`POINTS`] in the process's record, the fit's
//! pairwise slopes a buffer on the stack).
//!
//! What it guards against, learned from peers' false positives:
//! - **warm-up**: growth in the first `leak-warmup` after the process started (or exec'd) is
//!   not part of any series (Coroot's issue 893: services named as leaking at start);
//! - **caches that fill and level off**: the growth must last `leak-sustain` and still go on
//!   (a cache that stops filling crosses no more waypoints, so nothing new is fitted), and its
//!   later half must grow at least half as fast as the whole (a fill that slows down is not
//!   projected at its first pace);
//! - **GC cycles**: the slope is fitted to the low envelope (the points the process never went
//!   under afterwards, up to its last trough), by Theil–Sen (the median of the pairwise slopes),
//!   so a saw-tooth whose troughs stay level has no slope, and one whose troughs rise has
//!   theirs;
//! - **restarts and large drops**: a new process or program starts a new series, and so does a
//!   fall under the lowest waypoint of the series (the process gave back all it grew).

use std::time::{Duration, Instant};

use memory_monitor_ebpf::waypoint;

use crate::rules::Leak;

/// Points kept per process: with waypoints a 32nd of the limit apart, as many as from nothing
/// to the limit.
pub(crate) const POINTS: usize = 32;

/// Points a series needs before it is fitted.
const MIN_POINTS: usize = 4;

/// One waypoint crossed: when (ms after the series' origin) and at what RSS (KiB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Point {
    at_ms: u32,
    kib: u32,
}

/// What the fit found when it names a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Suspicion {
    /// Growth of the low envelope, bytes per second.
    pub(crate) slope: f64,
    /// When the RSS reaches the limit at that pace.
    pub(crate) time_to_limit: Duration,
}

/// One process's growth timeline.
#[derive(Debug, Clone)]
pub(crate) struct Trend {
    points: [Point; POINTS],
    /// How many points are kept, and where the oldest is.
    len: usize,
    oldest: usize,
    /// The time the points count from.
    origin: Option<Instant>,
    /// When the process (or its program) started: growth before its warm-up is over is not
    /// fitted. `None`: longer ago than this machine's monotonic clock reaches.
    started: Option<Instant>,
    /// Poll mode: the last waypoint its readings crossed, as its index plus one (0: none), as
    /// the kernel side keeps it in eBPF mode.
    crossed: u32,
    /// The series has been named (once per series).
    named: bool,
    /// The last fit's projected time to the limit, while it names the process.
    projection: Option<Duration>,
}

impl Trend {
    /// A timeline for a process that started at `started`.
    pub(crate) fn new(started: Option<Instant>) -> Trend {
        Trend {
            points: [Point::default(); POINTS],
            len: 0,
            oldest: 0,
            origin: None,
            started,
            crossed: 0,
            named: false,
            projection: None,
        }
    }

    /// The process exec'd a new program at `now`: a new series, after a new warm-up.
    pub(crate) fn restart(&mut self, now: Instant) {
        *self = Trend::new(Some(now));
    }

    /// The projected time to the limit while the last fit names the process.
    pub(crate) fn projection(&self) -> Option<Duration> {
        self.projection
    }

    /// Poll mode: an exact reading `rss` at `now`; a waypoint when it crossed one (as the
    /// kernel side judges them), and what the fit then says.
    pub(crate) fn reading(
        &mut self,
        now: Instant,
        rss: u64,
        limit: u64,
        leak: &Leak,
    ) -> Option<Suspicion> {
        let index = waypoint::due(rss, self.crossed, limit >> waypoint::SHIFT)?;
        self.crossed = index + 1;
        self.waypoint(now, rss, limit, leak)
    }

    /// A waypoint crossed at `at`, at `rss`: recorded, and the series fitted. Returns the
    /// suspicion the first time in a series that the fit names the process.
    pub(crate) fn waypoint(
        &mut self,
        at: Instant,
        rss: u64,
        limit: u64,
        leak: &Leak,
    ) -> Option<Suspicion> {
        let step = (limit >> waypoint::SHIFT).max(1);
        let warming = |started: Instant| {
            started
                .checked_add(leak.warmup)
                .is_none_or(|over| at < over)
        };
        if self.started.is_some_and(warming) {
            return None;
        }
        let kib = u32::try_from(rss >> 10).unwrap_or(u32::MAX);
        if let Some(last) = self.last() {
            // The same waypoint again (the kernel side was followed afresh): nothing new.
            if (u64::from(last.kib) << 10) / step == rss / step {
                return None;
            }
        }
        let origin = *self.origin.get_or_insert(at);
        // Never before the last (reports from other CPUs may come a little out of order).
        let after = self.last().map_or(0, |last| last.at_ms);
        let at_ms =
            u32::try_from(at.saturating_duration_since(origin).as_millis()).map(|ms| ms.max(after));
        let index = |kib: u32| (u64::from(kib) << 10) / step;
        let lowest = self.iter().map(|p| index(p.kib)).min();
        match at_ms {
            // Under the waypoint all the series grew from, or too long to count in
            // milliseconds: a new series.
            Ok(_) if lowest.is_some_and(|lowest| index(kib) < lowest) => self.start_series(at, kib),
            Err(_) => self.start_series(at, kib),
            Ok(at_ms) => self.push(Point { at_ms, kib }),
        }
        let fit = self.fit(limit, leak);
        self.projection = fit.map(|s| s.time_to_limit);
        match (fit, self.named) {
            (Some(suspicion), false) => {
                self.named = true;
                Some(suspicion)
            }
            _ => None,
        }
    }

    fn start_series(&mut self, at: Instant, kib: u32) {
        self.len = 0;
        self.oldest = 0;
        self.origin = Some(at);
        self.named = false;
        self.push(Point { at_ms: 0, kib });
    }

    fn push(&mut self, point: Point) {
        if self.len < POINTS {
            self.points[(self.oldest + self.len) % POINTS] = point;
            self.len += 1;
        } else {
            self.points[self.oldest] = point;
            self.oldest = (self.oldest + 1) % POINTS;
        }
    }

    fn last(&self) -> Option<Point> {
        (self.len > 0).then(|| self.points[(self.oldest + self.len - 1) % POINTS])
    }

    /// The points, oldest first.
    fn iter(&self) -> impl Iterator<Item = Point> + '_ {
        (0..self.len).map(|i| self.points[(self.oldest + i) % POINTS])
    }

    /// The suspicion the series supports now, if any: long enough, growing on its low
    /// envelope without slowing down, and at that pace at the limit within the horizon.
    ///
    /// Waypoints come thick where the process grows fast and thin where it is flat, so they
    /// are not fitted as they are: the envelope between them is read at [`SAMPLES`] evenly
    /// spaced times (linearly between two waypoints, where the process was), and the slope
    /// is the Theil–Sen slope of those samples.
    fn fit(&self, limit: u64, leak: &Leak) -> Option<Suspicion> {
        let (first, last) = (self.iter().next()?, self.last()?);
        if self.len < MIN_POINTS || u64::from(last.at_ms - first.at_ms) < millis(leak.sustain) {
            return None;
        }
        let mut envelope = [Point::default(); POINTS];
        let count = self.low_envelope(&mut envelope);
        let envelope = &envelope[..count];
        let samples = even_samples(envelope)?;
        let slope = theil_sen(&samples);
        let later = theil_sen(&samples[SAMPLES / 2..]);
        if slope <= 0.0 || later < slope / 2.0 {
            return None;
        }
        let rss = u64::from(last.kib) << 10;
        let left = limit.checked_sub(rss).filter(|&left| left > 0)?;
        let time_to_limit = Duration::try_from_secs_f64(left as f64 / slope).ok()?;
        (time_to_limit <= leak.horizon).then_some(Suspicion {
            slope,
            time_to_limit,
        })
    }

    /// Writes the low envelope into `into`, oldest first; returns how many points it has: the
    /// points no later point is under, up to the last trough (a point under the one before
    /// it), so that the rise since, which a later fall may take back, does not count.
    fn low_envelope(&self, into: &mut [Point; POINTS]) -> usize {
        let mut points = [Point::default(); POINTS];
        for (slot, point) in points.iter_mut().zip(self.iter()) {
            *slot = point;
        }
        let points = &points[..self.len];
        let end = points
            .windows(2)
            .rposition(|pair| pair[1].kib < pair[0].kib)
            .map_or(points.len(), |trough| trough + 2);
        let mut count = 0;
        let mut floor = u32::MAX;
        for point in points[..end].iter().rev() {
            if point.kib <= floor {
                floor = point.kib;
                into[count] = *point;
                count += 1;
            }
        }
        into[..count].reverse();
        count
    }
}

/// Samples of a trend, evenly spaced in time.
const SAMPLES: usize = 32;

/// The pairwise slopes of [`SAMPLES`] samples.
const PAIRS: usize = SAMPLES * (SAMPLES - 1) / 2;

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `points` (oldest first) read at [`SAMPLES`] evenly spaced times from the first to the last,
/// linearly between two: (seconds, bytes). `None` when they span no time.
fn even_samples(points: &[Point]) -> Option<[(f64, f64); SAMPLES]> {
    let (first, last) = (points.first()?, points.last()?);
    let span = f64::from(last.at_ms.checked_sub(first.at_ms).filter(|&ms| ms > 0)?);
    let bytes = |kib: u32| f64::from(kib) * 1024.0;
    let mut samples = [(0.0, 0.0); SAMPLES];
    let mut next = 0;
    for (i, sample) in samples.iter_mut().enumerate() {
        let at = f64::from(first.at_ms) + span * i as f64 / (SAMPLES - 1) as f64;
        while next + 1 < points.len() && f64::from(points[next + 1].at_ms) < at {
            next += 1;
        }
        let a = points[next];
        let b = points.get(next + 1).copied().unwrap_or(a);
        let width = f64::from(b.at_ms.saturating_sub(a.at_ms));
        let along = match width > 0.0 {
            true => ((at - f64::from(a.at_ms)) / width).clamp(0.0, 1.0),
            false => 0.0,
        };
        let value = bytes(a.kib) + (bytes(b.kib) - bytes(a.kib)) * along;
        *sample = (at / 1000.0, value);
    }
    Some(samples)
}

/// The Theil–Sen slope of `samples` (seconds, bytes) in bytes per second: the median of the
/// slopes between every two of them; 0 for fewer than two.
fn theil_sen(samples: &[(f64, f64)]) -> f64 {
    let mut slopes = [0f64; PAIRS];
    let mut count = 0;
    for (i, a) in samples.iter().enumerate() {
        for b in &samples[i + 1..] {
            if b.0 > a.0 && count < PAIRS {
                slopes[count] = (b.1 - a.1) / (b.0 - a.0);
                count += 1;
            }
        }
    }
    let slopes = &mut slopes[..count];
    if slopes.is_empty() {
        return 0.0;
    }
    let middle = slopes.len() / 2;
    let (_, median, _) = slopes.select_nth_unstable_by(middle, f64::total_cmp);
    *median
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const LIMIT: u64 = 1024 * MIB;

    fn leak() -> Leak {
        Leak {
            horizon: Duration::from_secs(3600),
            warmup: Duration::from_secs(60),
            sustain: Duration::from_secs(300),
        }
    }

    /// Feeds `rss(t)` in bytes, read every second for `seconds`, to a trend of a process
    /// that started at `start`, as poll mode would; returns when it was named, and how.
    fn named(start: Instant, seconds: u64, rss: impl Fn(u64) -> u64) -> Option<(u64, Suspicion)> {
        let mut trend = Trend::new(Some(start));
        (0..seconds).find_map(|t| {
            trend
                .reading(start + Duration::from_secs(t), rss(t), LIMIT, &leak())
                .map(|s| (t, s))
        })
    }

    #[test]
    fn a_steady_leak_is_named_with_its_time_to_the_limit() {
        let start = Instant::now();
        // 100 MiB, then 256 KiB a second: at the limit after 3,680 s.
        let (at, suspicion) = named(start, 4000, |t| 100 * MIB + t * 256 * 1024).unwrap();
        // Not before warm-up and sustain are over, and named within the horizon.
        assert!(at >= 360, "{at}");
        let truth = 3680 - at;
        let said = suspicion.time_to_limit.as_secs();
        assert!(
            said.abs_diff(truth) * 4 < truth,
            "said {said} s, truth {truth} s"
        );
        assert!((suspicion.slope - 262_144.0).abs() < 262_144.0 / 4.0);
    }

    #[test]
    fn growth_in_warm_up_alone_is_not_named() {
        let start = Instant::now();
        // Fills 400 MiB in its first minute (its warm-up), then is flat.
        let fill = |t: u64| 100 * MIB + t.min(60) * 400 * MIB / 60;
        assert_eq!(named(start, 4000, fill), None);
    }

    #[test]
    fn a_cache_that_fills_and_levels_off_is_not_named() {
        let start = Instant::now();
        // Fills 400 MiB over two minutes after warm-up, then stays.
        let fill = |t: u64| 100 * MIB + t.clamp(60, 180).saturating_sub(60) * 400 * MIB / 120;
        assert_eq!(named(start, 4000, fill), None);
        // A fill that slows down to a trickle (2 MiB a second for 150 s, then 64 KiB): not
        // projected at its first pace, and at the second the limit is beyond the horizon.
        let slowing = |t: u64| {
            let fast = t.clamp(60, 210) - 60;
            let slow = t.saturating_sub(210);
            100 * MIB + fast * 2 * MIB + slow * 64 * 1024
        };
        assert_eq!(named(start, 4000, slowing), None);
    }

    #[test]
    fn cycles_that_free_what_they_grew_are_not_named_and_rising_troughs_are() {
        let start = Instant::now();
        // A saw-tooth: 300 MiB more over 200 s, then freed, again and again.
        let cycles = |t: u64| 200 * MIB + (t % 200) * 300 * MIB / 200;
        assert_eq!(named(start, 4000, cycles), None);
        // The same, its troughs 128 KiB a second higher: a leak under the cycles.
        let leaking = |t: u64| cycles(t) + t * 128 * 1024;
        let (_, suspicion) = named(start, 6000, leaking).expect("named");
        assert!(
            (suspicion.slope - 131_072.0).abs() < 131_072.0 / 2.0,
            "{}",
            suspicion.slope
        );
    }

    #[test]
    fn a_series_is_named_once_and_again_after_a_large_drop() {
        let start = Instant::now();
        let mut trend = Trend::new(None);
        let mut names = 0;
        for t in 0..8000u64 {
            // Leaks 256 KiB a second; at 4000 s gives it all back and more, and starts again.
            let rss = match t < 4000 {
                true => 100 * MIB + t * 256 * 1024,
                false => 40 * MIB + (t - 4000) * 256 * 1024,
            };
            let at = start + Duration::from_secs(t);
            names += usize::from(trend.reading(at, rss, LIMIT, &leak()).is_some());
        }
        assert_eq!(names, 2);
    }

    #[test]
    fn beyond_the_horizon_nothing_is_named() {
        let start = Instant::now();
        // 16 KiB a second: the limit is 15 hours away.
        assert_eq!(named(start, 20_000, |t| 100 * MIB + t * 16 * 1024), None);
    }
}
