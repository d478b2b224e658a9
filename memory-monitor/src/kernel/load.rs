//! The loader: carries a [`Plan`] out. It loads the object with the plan's globals and map
//! sizes, makes the exact reading ready, writes the rules, attaches the discovery programs and
//! then the RSS program (so no process born meanwhile is missed), and takes the maps.

use std::io;

use aya::maps::{Array, CgroupArray, HashMap, PerCpuArray, RingBuf, StackTraceMap};
use aya::programs::{BtfTracePoint, TracePoint};
use aya::{Ebpf, EbpfLoader};
use tokio::io::unix::AsyncFd;

use super::btf::ExactRead;
use super::encode::{self, Judging};
use super::exact_reading;
use super::maps::Maps;
use super::plan::{Attach, Plan, RssProgram};
use super::ring::Ring;
use super::{Loaded, ProgramStats, Setup, Unavailable};
use crate::accounting::Exact;
use crate::host::logging::one_line;
use crate::rules::RuleSet;

/// The programs, embedded: the binary needs nothing else at run time.
static PROGRAMS: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/memory-monitor-ebpf"));

/// The discovery programs and the tracepoints (`category`, `name`) they attach to; attached
/// before the RSS program so no process born meanwhile is missed.
const DISCOVERY: [(&str, &str, &str); 5] = [
    ("exec", "sched", "sched_process_exec"),
    ("newtask", "task", "task_newtask"),
    ("rename", "task", "task_rename"),
    ("migrate", "cgroup", "cgroup_attach_task"),
    ("exit", "sched", "sched_process_exit"),
];

/// The system calls after which a process may run as another user (the `creds` program
/// follows each call's exit tracepoint).
const CREDENTIAL_CALLS: [&str; 3] = ["sys_exit_setuid", "sys_exit_setreuid", "sys_exit_setresuid"];

/// Loads and attaches the programs as `plan` says, with `rules` in force.
pub(crate) fn load(plan: &Plan, rules: &RuleSet) -> Result<Loaded, Unavailable> {
    let (globals, maps) = (&plan.globals, &plan.maps);
    let exact = &globals.exact;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("EVENTS", maps.ring_bytes)
        .override_global("MONITOR_TGID", &globals.monitor_tgid, true)
        .override_global("MONITOR_PARENT_TGID", &globals.monitor_parent_tgid, true)
        .override_global("TASK_MM_OFFSET", &globals.task_mm_offset, true)
        .override_global("RSS_COUNT_OFFSETS", &globals.rss_count_offsets, true)
        .override_global("PAGE_SIZE", &globals.page_size, true)
        .override_global("EXIT_HAS_GROUP_DEAD", &globals.exit_has_group_dead, true)
        .override_global("TASK_SIGNAL_OFFSET", &globals.task_signal_offset, true)
        .override_global("SIGNAL_LIVE_OFFSET", &globals.signal_live_offset, true)
        .override_global(
            "SIGNAL_THREADS_OFFSET",
            &globals.signal_threads_offset,
            true,
        )
        .override_global("THREAD_LAG", &globals.thread_lag, true)
        .override_global("SLOT_MASK", &globals.slot_mask, true)
        .override_global("SAMPLE_BYTES", &globals.sample_bytes, true)
        .override_global("COUNT_SWAP", &globals.count_swap, true)
        .override_global("OOM_DETAILS", &globals.oom_details, true)
        .override_global("EXACT_SUM", &exact.sum, true)
        .override_global("RSS_PARTS_OFFSETS", &exact.parts, true)
        .override_global("POSSIBLE_CPUS", &exact.cpus, true)
        .override_global("ARRAY_PPTRS_OFFSET", &exact.array_pptrs, true)
        .override_global("TASK_RSS_OFFSET", &exact.task_cache, true)
        .override_global("TASK_RSS_EVENTS_OFFSET", &exact.task_events, true)
        .override_global("TASK_FLAGS_OFFSET", &exact.task_flags, true)
        .override_global("SIGNAL_THREAD_HEAD_OFFSET", &exact.thread_head, true)
        .override_global("TASK_THREAD_NODE_OFFSET", &exact.thread_node, true)
        .map_max_entries("CPU_OFFSETS", maps.cpu_offsets)
        .map_max_entries("STACKS", maps.growth)
        .map_max_entries("GROWTH", maps.growth)
        .override_global(aya_log::LEVEL, &globals.log_level, false)
        .map_max_entries("WATCHED", maps.capacity)
        .map_max_entries("MM_OWNER", maps.capacity)
        .map_max_entries("OWNED_MM", maps.capacity)
        // A request per level (the limit, the warning) a process may have waiting.
        .map_max_entries("REARM", maps.capacity.saturating_mul(3))
        .map_max_entries("GROUP_SHARES", maps.capacity)
        .map_max_entries("SIGNAL_CLAIMS", maps.capacity)
        .map_max_entries("WATCH_SLOTS", maps.slots)
        .map_max_entries("MM_SLOTS", maps.slots)
        .load(PROGRAMS)
        .map_err(|e| Unavailable(format!("loading the BPF programs failed: {}", one_line(&e))))?;
    if plan.debug_log {
        start_program_logs(&mut ebpf);
    }
    // Made ready before the rules go in: whether watches sum per-CPU parts is in them.
    let reading = plan
        .exact_read
        .clone()
        .and_then(|read| exact_reading::prepare(&mut ebpf, exact).map(|()| read));
    let judging = Judging {
        accounting: plan.accounting,
        sums_cpus: plan.attach == Attach::TpBtf
            && matches!(reading, Ok(ExactRead::CpuParts { .. })),
    };
    let take = |ebpf: &mut Ebpf, name: &str| {
        ebpf.take_map(name)
            .ok_or_else(|| Unavailable(format!("the BPF object has no map {name}")))
    };
    let map_error = |e: aya::maps::MapError| Unavailable(format!("opening a BPF map failed: {e}"));
    // The rules go in before the discovery programs look at them.
    let mut rule_table = Array::try_from(take(&mut ebpf, "RULES")?).map_err(map_error)?;
    let mut cgroups = CgroupArray::try_from(take(&mut ebpf, "CGROUPS")?).map_err(map_error)?;
    encode::write_rules(
        &mut rule_table,
        &mut cgroups,
        rules,
        plan.kernel_signal,
        judging,
    )
    .map_err(|e| Unavailable(format!("writing the rules to the kernel side failed: {e}")))?;
    for (program, category, name) in DISCOVERY {
        attach_tracepoint(&mut ebpf, program, category, name)?;
    }
    // Not having them costs one kind of discovery, not eBPF mode: said once, and survived.
    if let Err(why) = attach_credential_calls(&mut ebpf) {
        tracing::warn!(
            event = "creds_unfollowed",
            "credential changes are not followed ({why}): a process that becomes a rule's user after it started is watched only once it execs or is renamed"
        );
    }
    // Nor does a kernel that cannot name the OOM killer's victims cost eBPF mode.
    let oom_kills = plan.oom_kills.clone().and_then(|()| {
        attach_tracepoint(&mut ebpf, "mark_victim", "oom", "mark_victim").map_err(|e| e.0)
    });
    if let Err(why) = oom_kills {
        tracing::warn!(
            event = "oom_kills_unseen",
            "the kernel's OOM kills are not reported ({why})"
        );
    }
    match plan.rss_program {
        RssProgram::Tracepoint {
            program,
            category,
            name,
        } => attach_tracepoint(&mut ebpf, program, category, name)?,
        RssProgram::TpBtf { program, name } => attach_btf_tracepoint(&mut ebpf, program, name)?,
    }
    let stats = match plan.rss_program {
        RssProgram::Tracepoint { program, .. } | RssProgram::TpBtf { program, .. }
            if plan.bpf_stats =>
        {
            ProgramStats::start(&ebpf, program)
        }
        _ => None,
    };
    let events = RingBuf::try_from(take(&mut ebpf, "EVENTS")?).map_err(map_error)?;
    let events = readable_fd(events)
        .map_err(|e| Unavailable(format!("cannot wait on the ring buffer: {e}")))?;
    let ring = Ring::attached(
        events,
        PerCpuArray::try_from(take(&mut ebpf, "LOST")?).map_err(map_error)?,
        Array::try_from(take(&mut ebpf, "LOST_FLAG")?).map_err(map_error)?,
    );
    let setup = Setup {
        attach: plan.attach,
        accounting: plan.accounting,
        exact: Exact::choose(reading.as_ref().ok().map(ExactRead::exact)),
        exact_why: reading.as_ref().err().cloned(),
        sums_cpus: judging.sums_cpus,
    };
    let growth = match plan.profiling {
        true => Some((
            StackTraceMap::try_from(take(&mut ebpf, "STACKS")?).map_err(map_error)?,
            HashMap::try_from(take(&mut ebpf, "GROWTH")?).map_err(map_error)?,
        )),
        false => None,
    };
    let maps = Maps {
        growth,
        count_swap: plan.globals.count_swap != 0,
        watched: HashMap::try_from(take(&mut ebpf, "WATCHED")?).map_err(map_error)?,
        rearm: HashMap::try_from(take(&mut ebpf, "REARM")?).map_err(map_error)?,
        claims: HashMap::try_from(take(&mut ebpf, "SIGNAL_CLAIMS")?).map_err(map_error)?,
        shares: HashMap::try_from(take(&mut ebpf, "GROUP_SHARES")?).map_err(map_error)?,
        slots: Array::try_from(take(&mut ebpf, "WATCH_SLOTS")?).map_err(map_error)?,
        slot_mask: plan.globals.slot_mask,
        slot_counts: vec![0; plan.maps.slots as usize].into_boxed_slice(),
        counted: Vec::with_capacity(plan.maps.capacity as usize),
        kernel_signal: plan.kernel_signal,
        rules: rule_table,
        cgroups,
        judging,
        reads_exact: reading.is_ok(),
        readings: 0,
        ebpf,
    };
    Ok(Loaded {
        ring,
        maps,
        setup,
        stats,
    })
}

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &str,
    category: &str,
    name: &str,
) -> Result<(), Unavailable> {
    let target = format!("{category}:{name}");
    let tracepoint: &mut TracePoint = program_of(ebpf, program, &target)?;
    tracepoint
        .load()
        .map_err(|e| load_failed(program, &target, e))?;
    tracepoint
        .attach(category, name)
        .map_err(|e| attach_failed(program, &target, &e))?;
    Ok(())
}

/// Attaches the `creds` program to the exit of every call in [`CREDENTIAL_CALLS`].
fn attach_credential_calls(ebpf: &mut Ebpf) -> Result<(), Unavailable> {
    let target = "syscalls:sys_exit_set*uid";
    let tracepoint: &mut TracePoint = program_of(ebpf, "creds", target)?;
    tracepoint
        .load()
        .map_err(|e| load_failed("creds", target, e))?;
    for call in CREDENTIAL_CALLS {
        tracepoint
            .attach("syscalls", call)
            .map_err(|e| attach_failed("creds", &format!("syscalls:{call}"), &e))?;
    }
    Ok(())
}

fn attach_btf_tracepoint(ebpf: &mut Ebpf, program: &str, name: &str) -> Result<(), Unavailable> {
    let target = format!("tp_btf/{name}");
    let btf = aya::Btf::from_sys_fs()
        .map_err(|e| Unavailable(format!("cannot read the kernel's BTF for {target}: {e}")))?;
    let tracepoint: &mut BtfTracePoint = program_of(ebpf, program, &target)?;
    tracepoint
        .load(name, &btf)
        .map_err(|e| load_failed(program, &target, e))?;
    tracepoint.attach().map_err(|e| {
        Unavailable(format!(
            "attaching {program} to {target} failed: {}",
            one_line(&e)
        ))
    })?;
    Ok(())
}

/// Why attaching `program` to the classic tracepoint `target` failed: where the kernel's
/// perf_event_paranoid refused it, that and the fix, in place of the bare system call error.
fn attach_failed(program: &str, target: &str, error: &aya::programs::ProgramError) -> Unavailable {
    let why = refused_by_paranoia(error).unwrap_or_else(|| one_line(error));
    Unavailable(format!("attaching {program} to {target} failed: {why}"))
}

/// `perf_event_open` (how a classic tracepoint is attached) refused with `EACCES` to a
/// process without `CAP_SYS_ADMIN` while `kernel.perf_event_paranoid` is above 2: Debian's
/// kernels (3 by default) then allow it to `CAP_SYS_ADMIN` alone, whatever else is held
/// (`CAP_PERFMON` is not enough). Said with both fixes, since the user picks one.
fn refused_by_paranoia(error: &aya::programs::ProgramError) -> Option<String> {
    use rustix::io::Errno;
    use rustix::thread::CapabilitySet;
    let aya::programs::ProgramError::SyscallError(failed) = error else {
        return None;
    };
    if !failed.call.starts_with("perf_event_open")
        || Errno::from_io_error(&failed.io_error) != Some(Errno::ACCESS)
    {
        return None;
    }
    let level = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid").ok()?;
    let level: i32 = level.trim().parse().ok()?;
    let admin = rustix::thread::capabilities(None)
        .ok()?
        .effective
        .contains(CapabilitySet::SYS_ADMIN);
    (level > 2 && !admin).then(|| {
        format!(
            "perf_event_open refused: kernel.perf_event_paranoid is {level} (Debian's kernels default to 3), under which attaching a tracepoint needs CAP_SYS_ADMIN; give the monitor CAP_SYS_ADMIN (the packaged units do) or set kernel.perf_event_paranoid=2"
        )
    })
}

/// The program `name` in `ebpf`, as the program type `P`.
fn program_of<'a, P>(ebpf: &'a mut Ebpf, name: &str, target: &str) -> Result<&'a mut P, Unavailable>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| Unavailable(format!("the BPF object has no program {name}")))?
        .try_into()
        .map_err(|e| {
            Unavailable(format!(
                "preparing {name} for {target} failed: {}",
                one_line(&e)
            ))
        })
}

/// Why loading a program failed; the verifier's own complaint when it refused it.
fn load_failed(program: &str, target: &str, error: aya::programs::ProgramError) -> Unavailable {
    match &error {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => Unavailable(format!(
            "the kernel refused program {program} for {target} ({io_error}); the verifier says: {}",
            verifier_complaint(&verifier_log.to_string())
        )),
        other => Unavailable(format!(
            "loading {program} for {target} failed: {}",
            one_line(other)
        )),
    }
}

/// Registers a ring buffer with the runtime, to wait until it has data.
fn readable_fd<T: std::os::fd::AsRawFd>(ring: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: aya's ring buffers own their map's file descriptor for as long as they live,
    // and the AsyncFd owns the ring buffer: the descriptor stays open and the same.
    unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(Into::into)
}

/// Forwards the programs' own log lines (aya-log) to this process's log.
fn start_program_logs(ebpf: &mut Ebpf) {
    let Ok(logger) = aya_log::EbpfLogger::init(ebpf) else {
        return;
    };
    let Ok(mut logger) = readable_fd(logger) else {
        return;
    };
    tokio::spawn(async move {
        while let Ok(mut guard) = logger.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}

/// The line of a verifier log that says what was refused: the last one before its statistics
/// ("verification time …", "processed … insns").
fn verifier_complaint(log: &str) -> &str {
    let is_statistics = |line: &str| {
        ["verification time", "stack depth", "processed ", "}"]
            .iter()
            .any(|prefix| line.starts_with(prefix))
    };
    log.lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty() && !is_statistics(line))
        .unwrap_or("(no verifier log)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_complaint_is_the_last_line_before_statistics() {
        let log = "0: R1=ctx() R10=fp0\n24: (71) r3 = *(u8 *)(r1 +0)\n\
                   dereference of modified ctx ptr R1 off=28 disallowed\n\
                   verification time 304 usec\nstack depth 152+0+0\n\
                   processed 23 insns (limit 1000000) max_states_per_insn 0\n }";
        assert_eq!(
            verifier_complaint(log),
            "dereference of modified ctx ptr R1 off=28 disallowed"
        );
        assert_eq!(verifier_complaint(""), "(no verifier log)");
    }
}
