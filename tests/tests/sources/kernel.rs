//! What the running kernel makes of the kernel side: every program loads, well within the
//! verifier's budget, under both attach types; and `kmem:rss_stat` reports a growing process.
//! Each prints `vmtest:` lines (start line, verified instructions, events per MiB) that
//! `cargo xtask vmtest` collects into its per-kernel table. These need root.

use memory_monitor_tests::{
    Monitor, Target, bpf_objects_of, exact, resident_bytes, run_monitor, unique_name, wait_until,
};

/// The running kernel's version, major and minor, from its release string.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse().unwrap());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

/// The verifier's budget: instructions it explores per program before giving up.
const VERIFIER_LIMIT: u32 = 1_000_000;

#[test]
#[ignore = "needs root"]
fn every_program_loads_well_within_the_verifier_budget() {
    for attach in ["tracepoint", "tp-btf"] {
        let name = unique_name("mmk-vb");
        let mut monitor =
            Monitor::start(&["--mode", "ebpf", "--attach", attach, "-m", "32", &name]);
        let start = monitor.expect_log(&["watching"]);
        assert!(
            start.contains("mode=ebpf") && start.contains(&format!("attach={attach}")),
            "{attach}: {}",
            monitor.log_text()
        );
        // The classic tracepoint's record sums per-CPU counters on every fault of every
        // process: the start line says so, where that is so. The kernel's RSS counters are
        // per-CPU from 6.2 on (they were per-thread caches before): known from its version,
        // not from the monitor's own reading of its BTF, which is what is under test.
        let per_cpu = kernel_version() >= (6, 2);
        assert_eq!(
            start.contains("fault_cost=\"every RSS change of every process sums a counter over"),
            attach == "tracepoint" && per_cpu,
            "{start}"
        );
        let fields: Vec<&str> = start
            .split_whitespace()
            .filter(|f| {
                ["attach=", "decides=", "margin=", "sums_in_kernel="]
                    .iter()
                    .any(|k| f.starts_with(k))
            })
            .collect();
        println!("vmtest: start {}", fields.join(" "));
        let held: Vec<u32> = bpf_objects_of(monitor.pid())
            .into_iter()
            .filter(|(kind, _)| kind == "prog_id")
            .map(|(_, id)| id)
            .collect();
        let mut seen = 0;
        for program in aya::programs::loaded_programs().flatten() {
            if !held.contains(&program.id()) {
                continue;
            }
            seen += 1;
            let program_name = program.name_as_str().unwrap_or("?").to_string();
            // The count is in the program's info from 5.16; before, the vmtest guest's
            // verifier-log shim reports it on the monitor's stderr.
            let insns = program
                .verified_instruction_count()
                .or_else(|| logged_insns(&mut monitor, &program_name));
            match insns {
                Some(insns) => {
                    println!(
                        "vmtest: attach={attach} program={program_name} verified_insns={insns}"
                    );
                    assert!(
                        insns < VERIFIER_LIMIT / 4,
                        "{attach}: {program_name} takes {insns} of the verifier's {VERIFIER_LIMIT}"
                    );
                }
                None => {
                    println!(
                        "vmtest: attach={attach} program={program_name} verified_insns=unknown"
                    );
                    assert!(
                        !insns_must_be_known(),
                        "{attach}: {program_name}'s verified instruction count is unknown, \
                         where the program's info (5.16 on) or the vmtest shim must give it"
                    );
                }
            }
        }
        assert!(seen >= 6, "{attach}: {seen} programs loaded: {held:?}");
        assert!(monitor.stop().success());
    }
}

/// Whether the verified instruction count must be known here: the program's info carries it
/// from Linux 5.16, and in the vmtest guests the verifier-log shim reports it on any kernel.
/// Only a host kernel older than 5.16, outside the guests, may leave it unknown.
fn insns_must_be_known() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    std::env::var_os("MEMORY_MONITOR_VMTEST").is_some() || version >= (5, 16)
}

/// `processed N insns` for `program`, as the verifier-log shim logged it, if it ran.
fn logged_insns(monitor: &mut Monitor, program: &str) -> Option<u32> {
    let log = monitor.log_text();
    let prefix = format!("vmtest-verifier: program={program} processed=");
    log.lines()
        .find_map(|line| line.trim().strip_prefix(prefix.as_str()))
        .and_then(|n| n.parse().ok())
}

/// Whether `statm` sums the kernel's counters exactly here, as the monitor's start-up probe
/// finds (its start line's `decides=statm`), agrees with what another process sees: a target
/// touches one page at a time, far fewer than a per-CPU batch or a thread's cache holds, and
/// after each its `statm` is compared with the count of its page tables (`smaps_rollup`).
/// Where `statm` sums exactly the two always agree; where it leaves per-CPU parts or
/// per-thread caches out they part within a few pages. Needs no root.
#[test]
fn the_monitors_statm_probe_agrees_with_the_page_tables() {
    let name = unique_name("mmk-sp");
    let mut target = Target::spawn(&name);
    let pid = target.pid().to_string();
    let mut parted = 0;
    for _ in 0..16 {
        target.grow_kib(4);
        parted += usize::from(resident_bytes(&pid) != exact::resident_bytes(&pid));
    }
    let (status, log) = run_monitor(&["--mode", "poll", "--once", "-m", "1G", &name]);
    assert!(status.success(), "{log}");
    let start = log
        .lines()
        .find(|line| line.contains("event=\"start\""))
        .unwrap_or_else(|| panic!("no start line:\n{log}"));
    let probed = start.contains("decides=statm");
    println!("vmtest: statm_exact={probed} parted={parted}/16");
    assert_eq!(
        probed,
        parted == 0,
        "statm and the page tables parted {parted} times in 16; {start}"
    );
}

#[test]
#[ignore = "needs root"]
fn rss_stat_reports_a_growing_process() {
    // In a tracefs instance of its own (its own buffer and PID filter), so nothing else that
    // traces on this machine is disturbed.
    let tracing = tracefs();
    let instance = tracing
        .join("instances")
        .join(unique_name("mmk-rs").replace('-', "_"));
    std::fs::create_dir(&instance).expect("tracefs instance");
    let write = |file: &str, text: &str| {
        std::fs::write(instance.join(file), text).unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    const MIB: usize = 32;
    // This thread grows: one page at a time, as a program touching new memory does.
    write("set_event_pid", &gettid().to_string());
    write("events/kmem/rss_stat/enable", "1");
    let memory = memory_monitor_tests::map_anonymous(MIB << 20);
    // 4 KiB faults, as most growth is (a huge page is one change of 512 pages).
    // SAFETY: advises exactly the fresh mapping.
    unsafe { libc::madvise(memory.cast(), MIB << 20, libc::MADV_NOHUGEPAGE) };
    for page in (0..MIB << 20).step_by(4096) {
        // SAFETY: inside the fresh mapping of MIB MiB.
        unsafe { memory.add(page).write_volatile(1) };
    }
    write("events/kmem/rss_stat/enable", "0");
    let trace = std::fs::read_to_string(instance.join("trace")).unwrap();
    // The kernel refuses to remove an instance while one of its files is open, and a child
    // another test of this binary is forking holds copies of this test's descriptors until
    // its exec closes them: wait for those to go.
    let removed = wait_until(|| match std::fs::remove_dir(&instance) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => false,
        Err(e) => panic!("remove the tracefs instance: {e}"),
    });
    assert!(removed, "the tracefs instance stayed busy");
    let events = trace.lines().filter(|l| l.contains("rss_stat:")).count();
    println!("vmtest: events_per_mib={:.1}", events as f64 / MIB as f64);
    assert!(
        events > 0,
        "no kmem:rss_stat event while growing by {MIB} MiB"
    );
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Where tracefs is mounted (mounted by this test if it is nowhere, as the monitor does).
fn tracefs() -> std::path::PathBuf {
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        let dir = std::path::Path::new(dir);
        if dir.join("instances").is_dir() {
            return dir.to_path_buf();
        }
    }
    let status = std::process::Command::new("mount")
        .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
        .status()
        .expect("mount");
    assert!(status.success(), "mount tracefs");
    std::path::PathBuf::from("/sys/kernel/tracing")
}
