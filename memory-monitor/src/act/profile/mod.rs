//! Memory profiles taken on breach: what was using the memory.
//!
//! On a breach the monitor asks the [`Profiler`] for a profile *before* the signal (the
//! process may exit on it and take its memory with it), but waits for the capture no longer
//! than a budget; past it the signal goes first. Encoding and writing happen afterwards on the
//! profiler's own thread, through a [`ProfileWriter`], retried a
//! bounded number of times; a failing writer is logged and counted, and never stops the
//! monitor. One profile per breach episode.

pub(crate) mod flame;
pub(crate) mod growth;
pub(crate) mod mapping;
mod pprof;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;

use crate::kernel::RawStacks;
use crate::sink::{ProfileInfo, ProfileWriter};
use crate::system::container::Identity;
use crate::units::Bytes;

/// Attempts at writing one profile, and the pause before each retry.
const WRITE_RETRIES: [Duration; 2] = [Duration::from_millis(200), Duration::from_secs(1)];

/// Breaches waiting for the profiler; more at once are not profiled (and counted as failures).
const QUEUE: usize = 16;

/// The name of a profile: `<UTC yyyymmddThhmmss>_<name>_<pid>_<unique>.pb.gz`. The name is
/// reduced to characters safe in a file name or URL; `unique` differs between monitors
/// (their PID) and between profiles of one monitor (a counter).
pub(crate) fn file_name(time: SystemTime, name: &str, pid: i32) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let stamp: String = humantime::format_rfc3339_seconds(time)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':' | 'Z'))
        .collect();
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{stamp}_{name}_{pid}_{:x}{unique:04x}.pb.gz",
        std::process::id()
    )
}

/// A breach's profile, gzip-compressed pprof: one sample per mapping with its `rss` (the
/// default sample type), `pss`, `anon` and `swap` bytes, located at the mapping's file or
/// kind; and, from the growth profile, one sample per stack with the bytes grown under it
/// (`growth`). Each line of `about` becomes one of the profile's comments.
pub(crate) fn encode(
    regions: &[mapping::Region],
    growth: &[growth::GrowthStack],
    about: &[String],
    time: SystemTime,
) -> Vec<u8> {
    let mut builder = pprof::Builder::new(&[
        ("rss", "bytes"),
        ("pss", "bytes"),
        ("anon", "bytes"),
        ("swap", "bytes"),
        ("growth", "bytes"),
    ]);
    builder.default_sample_type("rss");
    for line in about {
        builder.comment(line);
    }
    for region in regions.iter().filter(|r| r.rss + r.swap > 0) {
        let mapping = builder.mapping(region.start, region.end, region.offset, &region.path);
        let function = builder.function(&region.label());
        let location = builder.location(mapping, region.start, &[function]);
        let values = [region.rss, region.pss, region.anon, region.swap, 0];
        builder.sample(vec![location], values.map(|v| v as i64).to_vec());
    }
    for stack in growth {
        let locations = stack
            .frames
            .iter()
            .map(|frame| {
                let function = builder.function(&frame.function);
                builder.location(0, frame.address, &[function])
            })
            .collect();
        builder.sample(locations, vec![0, 0, 0, 0, stack.bytes as i64]);
    }
    builder.finish(time)
}

/// How much of `smaps` is read at a time.
const SMAPS_BUFFER: usize = 64 << 10;

/// Takes the mapping profile of `pid` now: reads its `smaps` (the part that must happen while
/// the process still holds its memory), a buffer at a time, into bounded regions.
pub(crate) fn capture(pid: i32) -> std::io::Result<mapping::Mappings> {
    let smaps = std::fs::File::open(format!("/proc/{pid}/smaps"))?;
    mapping::read_smaps(std::io::BufReader::with_capacity(SMAPS_BUFFER, smaps))
}

/// One breach to profile.
struct Job {
    pid: i32,
    /// The process, held: what is read of it by PID is its own only while it lives.
    pidfd: OwnedFd,
    name: String,
    /// Its container and pod, for the profile's comments and writers.
    identity: Identity,
    rss: u64,
    limit: u64,
    /// The growth profile's samples (eBPF mode), to be named while the process lives.
    growth: RawStacks,
    /// When the breach was profiled, and the profile's name.
    time: SystemTime,
    file: String,
    /// Told once `smaps` has been read and the growth stacks named.
    captured: SyncSender<()>,
}

/// Counts of what the profiler did (shared handles: the metrics read them).
#[derive(Debug, Default, Clone)]
pub(crate) struct ProfileCounts {
    /// Profiles written.
    pub(crate) written: Counter,
    /// Profiles lost: capture or every write attempt failed, or the profiler was busy.
    pub(crate) failed: Counter,
}

/// Profiles breaching processes on a thread of its own and hands the profiles to a writer.
#[derive(Debug)]
pub(crate) struct Profiler {
    jobs: SyncSender<Job>,
    budget: Duration,
    counts: ProfileCounts,
}

impl Profiler {
    /// Starts the profiler thread; a breach waits at most `budget` for its capture. What
    /// becomes of each profile is counted in `counts`.
    pub(crate) fn start(
        writer: Box<dyn ProfileWriter>,
        budget: Duration,
        counts: ProfileCounts,
    ) -> std::io::Result<Profiler> {
        let (jobs, queue) = sync_channel(QUEUE);
        let thread_counts = counts.clone();
        std::thread::Builder::new()
            .name("mm-profiler".into())
            .spawn(move || work(queue, writer.as_ref(), &thread_counts))?;
        Ok(Profiler {
            jobs,
            budget,
            counts,
        })
    }

    /// Profiles `pid` (held by `pidfd`, named `name`, in the container `identity` says, at
    /// `rss` over `limit`, with the growth samples `growth`): returns once what needs the live process has been read, or when the
    /// budget is spent, whichever is first. Returns the profile's name, once it is on its way.
    /// A process that exits before it has been read gets no profile: its PID may be another's.
    #[allow(
        clippy::too_many_arguments,
        reason = "one breach's whole situation, each part read by the check"
    )]
    pub(crate) fn profile(
        &self,
        pid: i32,
        pidfd: impl AsFd,
        name: &str,
        identity: Identity,
        rss: u64,
        limit: u64,
        growth: RawStacks,
    ) -> Option<String> {
        let pidfd = match pidfd.as_fd().try_clone_to_owned() {
            Ok(pidfd) => pidfd,
            Err(error) => {
                self.counts.failed.inc();
                tracing::warn!(event = "profile_failed", pid, %name, "no profile: cannot hold the process ({error})");
                return None;
            }
        };
        let (captured, wait) = sync_channel(1);
        let time = SystemTime::now();
        let file = file_name(time, name, pid);
        let job = Job {
            pid,
            pidfd,
            name: name.to_owned(),
            identity,
            rss,
            limit,
            growth,
            time,
            file: file.clone(),
            captured,
        };
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counts.failed.inc();
                tracing::warn!(event = "profile_failed", pid, %name, "no profile: the profiler is busy with earlier breaches");
                return None;
            }
        }
        if wait.recv_timeout(self.budget).is_err() {
            tracing::debug!(pid, %name, budget = ?self.budget, "profile capture over budget; signalling first");
        }
        Some(file)
    }
}

/// Reads what needs the live process, both by PID: its `smaps` and the names of its growth
/// stacks (through `/proc/PID/root`). Each is the breacher's only if it still lives after the
/// reading: `None` when it exited before its `smaps` was read; when it exited (on its signal,
/// say) while its stacks were being named, the profile keeps its mappings and goes without
/// the growth stacks.
fn capture_live(
    job: &Job,
) -> Option<std::io::Result<(mapping::Mappings, Vec<growth::GrowthStack>)>> {
    let mappings = capture(job.pid);
    if crate::system::procfs::has_exited(&job.pidfd) {
        return None;
    }
    let mut growth = growth::symbolize(job.pid, &job.growth);
    if crate::system::procfs::has_exited(&job.pidfd) {
        tracing::debug!(pid = job.pid, name = %job.name, "the process exited while its growth stacks were named; the profile goes without them");
        growth.clear();
    }
    Some(mappings.map(|mappings| (mappings, growth)))
}

/// The profile's comments: whose it is (with its container and pod, when it is in one), why
/// it was taken, and what was cut of its mappings.
fn about(job: &Job, mappings: &mapping::Mappings) -> Vec<String> {
    let mut lines = vec![format!(
        "memory-monitor profile of {} (pid {}): rss {} over the limit {}",
        job.name,
        job.pid,
        Bytes(job.rss),
        Bytes(job.limit)
    )];
    if let Some(id) = job.identity.container() {
        lines.push(format!("container_id: {id}"));
    }
    if let Some(uid) = job.identity.pod() {
        lines.push(format!("pod_uid: {uid}"));
    }
    lines.extend(mappings.notes());
    lines
}

/// The profiler thread: captures, then encodes and writes each profile.
fn work(queue: Receiver<Job>, writer: &dyn ProfileWriter, counts: &ProfileCounts) {
    while let Ok(job) = queue.recv() {
        let captured = capture_live(&job);
        let _ = job.captured.try_send(());
        let (pid, name, time, file) = (job.pid, job.name.as_str(), job.time, &job.file);
        let (mappings, growth) = match captured {
            Some(Ok(captured)) => captured,
            None => {
                counts.failed.inc();
                tracing::debug!(pid, %name, "no profile: the process exited while it was read");
                continue;
            }
            Some(Err(error)) => {
                counts.failed.inc();
                tracing::warn!(event = "profile_failed", pid, %name, "no profile: cannot read its memory map: {error}");
                continue;
            }
        };
        let about = about(&job, &mappings);
        let regions = &mappings.regions;
        let profile = encode(regions, &growth, &about, time);
        let info = ProfileInfo {
            pid,
            name,
            rss: job.rss,
            limit: job.limit,
            container_id: job.identity.container(),
            pod_uid: job.identity.pod(),
        };
        // The flame graph first: once the profile is there, so is its picture.
        let flame = flame::file_name(file);
        let title = format!("{name} (pid {pid})");
        let drawn = flame::svg(regions, &growth, &title, &about.join(", "))
            .map_err(|error| -> crate::sink::WriteError { Box::new(error) })
            .and_then(|svg| write_retried(writer, &flame, &svg, &info));
        match write_retried(writer, file, &profile, &info) {
            Ok(()) => {
                counts.written.inc();
                let flame_graph = drawn.is_ok().then_some(tracing::field::display(&flame));
                tracing::info!(event = "profile", pid, %name, profile = %file, flame_graph, to = %writer.describe(), "profile written");
                if let Err(error) = drawn {
                    tracing::warn!(event = "profile_failed", pid, %name, profile = %flame, to = %writer.describe(), "flame graph not written: {}", crate::host::logging::one_line(error.as_ref()));
                }
            }
            Err(error) => {
                let failed = counts.failed.inc() + 1;
                tracing::warn!(event = "profile_failed",
                    pid,
                    %name,
                    profile = %file,
                    to = %writer.describe(),
                    attempts = WRITE_RETRIES.len() + 1,
                    failed,
                    "profile not written: {}",
                    crate::host::logging::one_line(error.as_ref())
                );
            }
        }
    }
}

/// Writes `bytes` as `file` through `writer`, retrying after each of [`WRITE_RETRIES`].
fn write_retried(
    writer: &dyn ProfileWriter,
    file: &str,
    bytes: &[u8],
    info: &ProfileInfo<'_>,
) -> Result<(), crate::sink::WriteError> {
    let mut attempt = writer.write_about(file, bytes, info);
    for pause in WRITE_RETRIES {
        if attempt.is_ok() {
            break;
        }
        std::thread::sleep(pause);
        attempt = writer.write_about(file, bytes, info);
    }
    attempt
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn names_are_dated_safe_and_never_the_same() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_028_800);
        let first = file_name(time, "my app/x", 42);
        let second = file_name(time, "my app/x", 42);
        assert!(first.starts_with("20251125T000000_my_app_x_42_"), "{first}");
        assert!(first.ends_with(".pb.gz"));
        assert_ne!(first, second);
    }

    /// Keeps the names of the profiles written.
    struct Names(Arc<Mutex<Vec<String>>>);

    impl ProfileWriter for Names {
        fn write(&self, name: &str, _profile: &[u8]) -> Result<(), crate::sink::WriteError> {
            self.0.lock().unwrap().push(name.to_owned());
            Ok(())
        }
    }

    #[test]
    fn a_process_that_exited_yields_no_profile_though_its_pid_reads_as_another() {
        use rustix::process::{Pid, PidfdFlags, getpid, pidfd_open};
        // This process stands for the newcomer that reuses an exited breacher's PID: its smaps
        // are there to read, but the breacher's pidfd says the breacher is gone.
        let mut breacher = std::process::Command::new("true").spawn().unwrap();
        let gone = pidfd_open(Pid::from_child(&breacher), PidfdFlags::empty()).unwrap();
        breacher.wait().unwrap();
        let alive = pidfd_open(getpid(), PidfdFlags::empty()).unwrap();
        let written = Arc::new(Mutex::new(Vec::new()));
        let counts = ProfileCounts::default();
        let writer = Box::new(Names(Arc::clone(&written)));
        let profiler = Profiler::start(writer, Duration::from_secs(20), counts.clone()).unwrap();
        let me = getpid().as_raw_nonzero().get();
        profiler
            .profile(me, &gone, "gone", Identity::default(), 2, 1, Vec::new())
            .unwrap();
        let kept = profiler.profile(me, &alive, "alive", Identity::default(), 2, 1, Vec::new());
        // One after the other on the profiler's thread: once the second is done, both are.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while counts.written.get() + counts.failed.get() < 2 && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        // The living one's flame graph, then its profile.
        let kept = kept.unwrap();
        assert_eq!(*written.lock().unwrap(), [flame::file_name(&kept), kept]);
        assert_eq!(counts.failed.get(), 1);
    }

    #[test]
    fn capture_reads_this_process_map() {
        let regions = capture(std::process::id() as i32).unwrap().regions;
        assert!(regions.iter().any(|r| r.path == "[stack]"));
        assert!(regions.iter().map(|r| r.rss).sum::<u64>() > 0);
    }
}
