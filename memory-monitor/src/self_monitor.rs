//! Watching the calling process itself: go-mem-monitor's in-process monitor, in Rust.
//!
//! A thread checks this process's exact RSS every so often. Over the limit, it first gives
//! memory back to the system (`malloc_trim`, and with the `jemalloc` feature a purge of
//! jemalloc's arenas: go-mem-monitor's garbage collection), checks again, and if still over
//! writes a heap profile through the [`ProfileWriter`]: one per episode over the limit
//! (go-mem-monitor rewrites one every tick), with the writer's failures logged, not fatal.
//!
//! The profile is jemalloc's own allocation profile (which code allocated what is live) when
//! the `jemalloc` feature is on and the program runs on jemalloc with profiling active
//! (`prof:true,prof_active:true` in its `malloc_conf`); otherwise the mapping profile (each
//! mapping's resident memory, by file).
//!
//! ```no_run
//! use std::time::Duration;
//! use memory_monitor::SelfMonitor;
//! use memory_monitor::sink::dir::DirWriter;
//!
//! let writer = DirWriter::new("/var/tmp/profiles".as_ref());
//! let _monitor = SelfMonitor::new(writer)
//!     .with_memory_limit(512 << 20)
//!     .with_monitor_freq(Duration::from_secs(5))
//!     .start()
//!     .expect("thread started");
//! // ... the application runs; dropping `_monitor` stops the monitoring.
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::act::profile;
use crate::sink::ProfileWriter;
use crate::units::Bytes;

/// go-mem-monitor's default limit: 5 MiB.
pub const DEFAULT_MEMORY_LIMIT: u64 = 5 << 20;
/// go-mem-monitor's default check frequency: 10 s.
pub const DEFAULT_MONITOR_FREQ: Duration = Duration::from_secs(10);

/// Builds an in-process monitor of the calling process.
pub struct SelfMonitor {
    writer: Box<dyn ProfileWriter>,
    limit: u64,
    freq: Duration,
}

impl SelfMonitor {
    /// A monitor handing profiles to `writer`, with go-mem-monitor's defaults (5 MiB, 10 s).
    pub fn new(writer: impl ProfileWriter + 'static) -> SelfMonitor {
        SelfMonitor {
            writer: Box::new(writer),
            limit: DEFAULT_MEMORY_LIMIT,
            freq: DEFAULT_MONITOR_FREQ,
        }
    }

    /// Profiles once the RSS is over `bytes`.
    pub fn with_memory_limit(mut self, bytes: u64) -> SelfMonitor {
        self.limit = bytes;
        self
    }

    /// Checks every `freq`.
    pub fn with_monitor_freq(mut self, freq: Duration) -> SelfMonitor {
        self.freq = freq;
        self
    }

    /// Starts the monitoring thread; it stops when the handle is dropped.
    pub fn start(self) -> std::io::Result<SelfMonitorHandle> {
        let (stop, stopped) = channel::<()>();
        let counts = Arc::new(SelfCounts::default());
        let thread_counts = Arc::clone(&counts);
        let thread = std::thread::Builder::new()
            .name("mm-self-monitor".into())
            .spawn(move || {
                let mut over = false;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(self.freq) {
                    over = self.check(over, &thread_counts);
                    thread_counts.checks.fetch_add(1, Ordering::Relaxed);
                }
            })?;
        Ok(SelfMonitorHandle {
            stop: Some(stop),
            thread: Some(thread),
            counts,
        })
    }

    /// One check; `over`: whether this episode over the limit was already profiled. Returns
    /// whether the process is (still) over.
    fn check(&self, over: bool, counts: &SelfCounts) -> bool {
        if own_rss().is_none_or(|rss| rss <= self.limit) {
            return false;
        }
        if over {
            return true;
        }
        give_memory_back();
        let Some(rss) = own_rss().filter(|&rss| rss > self.limit) else {
            return false;
        };
        let pid = std::process::id() as i32;
        let time = SystemTime::now();
        let name = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
        let name = name.trim_end();
        let bytes = match allocation_profile() {
            Some(bytes) => bytes,
            None => match profile::capture(pid) {
                Ok(mappings) => {
                    let mut about = vec![format!(
                        "memory-monitor self profile of {name} (pid {pid}): rss {} over the limit {}",
                        Bytes(rss),
                        Bytes(self.limit)
                    )];
                    about.extend(mappings.notes());
                    profile::encode(&mappings.regions, &[], &about, time)
                }
                Err(error) => {
                    tracing::warn!(
                        event = "profile_failed",
                        "no profile of this process: cannot read its memory map: {error}"
                    );
                    return true;
                }
            },
        };
        let file = profile::file_name(time, name, pid);
        match self.writer.write(&file, &bytes) {
            Ok(()) => {
                counts.written.fetch_add(1, Ordering::Relaxed);
                tracing::info!(event = "profile", profile = %file, rss = %Bytes(rss), "over the memory limit; profile written");
            }
            Err(error) => tracing::warn!(event = "profile_failed",
                profile = %file,
                "over the memory limit; profile not written: {}",
                crate::host::logging::one_line(error.as_ref())
            ),
        }
        true
    }
}

/// Counts of what a [`SelfMonitor`] did.
#[derive(Debug, Default)]
struct SelfCounts {
    checks: AtomicU64,
    written: AtomicU64,
}

/// A running [`SelfMonitor`]; dropping it stops the thread (and waits for it).
pub struct SelfMonitorHandle {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    counts: Arc<SelfCounts>,
}

impl SelfMonitorHandle {
    /// Checks made so far.
    pub fn checks(&self) -> u64 {
        self.counts.checks.load(Ordering::Relaxed)
    }

    /// Profiles written so far.
    pub fn profiles_written(&self) -> u64 {
        self.counts.written.load(Ordering::Relaxed)
    }
}

impl Drop for SelfMonitorHandle {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// This process's exact RSS in bytes.
fn own_rss() -> Option<u64> {
    let statm = std::fs::read("/proc/self/statm").ok()?;
    let statm = crate::system::procfs::parse_statm(&statm).ok()?;
    Some(statm.resident_pages * crate::system::procfs::page_size())
}

/// Returns freed heap memory to the system, as far as the allocator can.
fn give_memory_back() {
    crate::footprint::release_free_heap();
    #[cfg(feature = "jemalloc")]
    // SAFETY: `arena.<MALLCTL_ARENAS_ALL>.purge` takes and returns nothing.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

/// jemalloc's allocation profile (gzip-compressed pprof), when this program runs on jemalloc
/// with profiling active; else `None`.
#[cfg(feature = "jemalloc")]
fn allocation_profile() -> Option<Vec<u8>> {
    let mut ctl = jemalloc_pprof::PROF_CTL.as_ref()?.blocking_lock();
    if !ctl.activated() {
        return None;
    }
    ctl.dump_pprof()
        .inspect_err(|error| {
            tracing::warn!(
                event = "profile_failed",
                "jemalloc's profile could not be taken: {error:#}"
            )
        })
        .ok()
}

/// Without the `jemalloc` feature there is no allocation profile.
#[cfg(not(feature = "jemalloc"))]
fn allocation_profile() -> Option<Vec<u8>> {
    None
}
