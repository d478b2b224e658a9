//! Benchmark target: grows past a memory limit and times the monitor's reaction.
//!
//! `mm-breach LIMIT STEP PAUSE_US GIVE_UP` (bytes, bytes, microseconds, bytes). Run it through a
//! link named as the monitor expects. It grows quickly to 4 MiB under LIMIT, then in steps of
//! STEP bytes with PAUSE_US between them, one page at a time, keeping its exact RSS (its own
//! `statm` at each step plus the pages it touched since), so it knows which page crossed the
//! limit and takes `CLOCK_MONOTONIC` right there. A thread waiting on every signal takes the
//! clock again when one arrives and reads `statm`. It stops growing at the signal, or GIVE_UP
//! bytes past the limit, then prints one line and exits:
//!
//! `crossed_ns=… signalled_ns=… rss_at_signal=… signal=…` (0 for what did not happen).

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

static SIGNALLED: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static SIGNALLED_NS: AtomicU64 = AtomicU64::new(0);
static RSS_AT_SIGNAL: AtomicU64 = AtomicU64::new(0);

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: LIMIT STEP PAUSE_US GIVE_UP"))
        .collect();
    let [limit, step, pause_us, give_up] = args[..] else {
        panic!("usage: mm-breach LIMIT STEP PAUSE_US GIVE_UP");
    };
    memory_monitor_tests::block_all_signals();
    std::thread::spawn(wait_for_signal);
    let page = page_size();
    let region_len = (limit + give_up + (64 << 20)) as usize;
    let region = memory_monitor_tests::map_anonymous(region_len);
    let mut touched = 0usize;
    let mut rss = statm_rss();
    let mut crossed_ns = 0;
    // Quickly to just under the limit: the crossing itself happens in the measured steps.
    while rss + (page as u64) < limit.saturating_sub(4 << 20) {
        touch(region, touched);
        touched += page;
        rss += page as u64;
    }
    rss = statm_rss();
    'grow: while !SIGNALLED.load(Ordering::SeqCst) && rss < limit + give_up {
        let step_end = touched + step as usize;
        while touched < step_end && touched + page <= region_len {
            touch(region, touched);
            touched += page;
            rss += page as u64;
            if crossed_ns == 0 && rss > limit {
                crossed_ns = now_ns();
            }
            if SIGNALLED.load(Ordering::Relaxed) {
                break 'grow;
            }
        }
        rss = statm_rss();
        if crossed_ns == 0 && rss > limit {
            crossed_ns = now_ns();
        }
        std::thread::sleep(Duration::from_micros(pause_us));
    }
    // Past the give-up point, wait a while for a late signal (a slow poll interval).
    for _ in 0..3000 {
        if SIGNALLED.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    println!(
        "crossed_ns={crossed_ns} signalled_ns={} rss_at_signal={} signal={}",
        SIGNALLED_NS.load(Ordering::SeqCst),
        RSS_AT_SIGNAL.load(Ordering::SeqCst),
        SIGNAL.load(Ordering::SeqCst)
    );
}

fn wait_for_signal() {
    // SAFETY: sigfillset initialises the set; sigwaitinfo fills a zeroed siginfo.
    let signal = unsafe {
        let mut set = std::mem::zeroed();
        libc::sigfillset(&mut set);
        let mut info = std::mem::zeroed();
        libc::sigwaitinfo(&set, &mut info)
    };
    SIGNALLED_NS.store(now_ns(), Ordering::SeqCst);
    RSS_AT_SIGNAL.store(statm_rss(), Ordering::SeqCst);
    SIGNAL.store(signal, Ordering::SeqCst);
    SIGNALLED.store(true, Ordering::SeqCst);
}

fn now_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the given timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn page_size() -> usize {
    // SAFETY: no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

fn statm_rss() -> u64 {
    memory_monitor_tests::resident_bytes("self")
}

fn touch(region: *mut u8, offset: usize) {
    // SAFETY: offset is within the mapping (callers stay under its length).
    unsafe { region.add(offset).write_volatile(1) };
}
