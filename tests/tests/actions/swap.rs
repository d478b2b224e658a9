//! Swap and the monitor's own memory: `footprint::trim` must not drop a private copy that
//! went to swap.
//!
//! `count = "rss+swap"`: a process whose pages went to swap still uses that memory. On a real
//! swap file (made on a disk-backed file system, `swapon`ed for the test and `swapoff`ed
//! after), two targets each in a memory cgroup limited to 24 MiB grow to 64 MiB, so most of
//! their pages go to swap; under a 40 MiB limit the one whose rule counts swap is signalled,
//! the one whose rule counts RSS alone (which stays under 24 MiB) is not. Both modes.

use memory_monitor_tests::swap::{SwapFile, limited, swap_of};
use memory_monitor_tests::{Monitor, RulesFile, Target, kib_field, unique_name};

const USR1: i32 = libc::SIGUSR1;

#[test]
#[ignore = "needs root"]
fn swapped_out_memory_counts_only_where_a_rule_says_so() {
    let _swap = SwapFile::on(256);
    for mode in ["poll", "ebpf"] {
        let (rss_only, with_swap) = (unique_name("mmsr"), unique_name("mmss"));
        let rules = RulesFile::new(
            "swap",
            &format!(
                "[[rule]]\nname = \"rss\"\nexact = \"{rss_only}\"\nmax-memory = \"40M\"\nsignal = \"USR1\"\nrepeat = \"never\"\n\n\
                 [[rule]]\nname = \"swap\"\nexact = \"{with_swap}\"\nmax-memory = \"40M\"\ncount = \"rss+swap\"\nsignal = \"USR1\"\nrepeat = \"never\"\n"
            ),
        );
        let mut monitor = Monitor::start(&[
            "--mode",
            mode,
            "-i",
            "100ms",
            "-v",
            "--config",
            rules.path(),
        ]);
        monitor.expect_log(&["watching", &format!("mode={mode}")]);
        monitor.expect_log(&["checked"]);

        // The RSS-only one first: over 40 MiB only with its swap.
        let cgroup_r = limited(24);
        let mut r = Target::spawn(&rss_only);
        cgroup_r.add(r.pid());
        let rss = r.grow(64);
        assert!(rss < 40 << 20, "{mode}: rss {rss}");
        assert!(
            swap_of(r.pid()) > 24 << 20,
            "{mode}: swap {}",
            swap_of(r.pid())
        );

        let cgroup_s = limited(24);
        let mut s = Target::spawn(&with_swap);
        cgroup_s.add(s.pid());
        s.grow(64);
        assert!(s.wait_signal(USR1), "{mode}: {}", monitor.log_text());
        let line = monitor.expect_log(&["over the limit", &format!("pid={}", s.pid())]);
        assert!(line.contains("rule=\"swap\""), "{line}");
        // Looked at since it grew (the breach after it was judged after it), never signalled.
        assert!(r.signals().is_empty(), "{mode}: {}", monitor.log_text());
        assert_eq!(
            monitor.count(&["over the limit", &format!("pid={}", r.pid())]),
            0
        );
        assert!(monitor.stop().success());
        drop((r, s));
        drop((cgroup_r, cgroup_s));
    }
}

/// The swap `smaps` shows for the mapping that starts at `start` in this process, in bytes.
fn own_swap_at(start: usize) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let header = format!("{start:x}-");
    let block = smaps.split_once(&header).expect("the mapping").1;
    kib_field(block, "Swap")
}

/// The attack on a host with swap: a private copy in a read-only file mapping (as the dynamic
/// linker's relocations are), swapped out (`Anonymous: 0`, `Swap: 4 kB`), must survive the
/// monitor's trim of its start-up pages.
#[test]
#[ignore = "needs root"]
fn a_swapped_out_private_copy_survives_a_trim() {
    use std::os::fd::AsRawFd as _;
    let _swap = SwapFile::on(16);
    let path = std::env::temp_dir().join(unique_name("mm-trim"));
    std::fs::write(&path, vec![b'f'; 4096]).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    // SAFETY: a fresh private mapping of one page of a file this test owns.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED);
    // SAFETY: the page is mapped writable and private: the write makes a private copy, which
    // then becomes read-only (as RELRO does) and is paged out to swap.
    unsafe {
        page.cast::<u8>().write_volatile(b'r');
        assert_eq!(libc::mprotect(page, 4096, libc::PROT_READ), 0);
        assert_eq!(libc::madvise(page, 4096, libc::MADV_PAGEOUT), 0);
    }
    assert_eq!(
        own_swap_at(page as usize),
        4096,
        "the private copy is in swap"
    );
    memory_monitor::footprint::trim();
    // SAFETY: still mapped, readable.
    let first = unsafe { page.cast::<u8>().read_volatile() };
    // SAFETY: unmapping what this test mapped.
    unsafe { libc::munmap(page, 4096) };
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        first, b'r',
        "the private copy was dropped and read again from the file"
    );
}
