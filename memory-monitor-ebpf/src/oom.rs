//! `oom:mark_victim`: the kernel's OOM killer chose a process to kill. Every victim is
//! reported, watched or not: the kernel's own kills are what the monitor exists to prevent,
//! so each one it failed to prevent, or never watched for, must leave a trace.
//!
//! The tracepoint fires in the OOM killer's context (the task that ran out of memory, or a
//! kernel thread), never the victim's, so nothing here reads `current`: the victim is only
//! what the record says. Its fields differ by kernel (5.10 and 6.1 have only the PID; later
//! kernels add the name, the user and the resident memory by kind): the loader finds which
//! this kernel has in tracefs and sets `OOM_DETAILS`; only those are read. An OOM kill is
//! rare, and this is off every hot path (the page-fault path never comes here).

use aya_ebpf::{Global, macros::tracepoint, programs::TracePointContext};
use memory_monitor_ebpf::{Event, Field, OomReport, OomVictim, event_kind, layout, oom};

use crate::{field, now_ns, send};

/// Which [`oom`] details this kernel's record has (set by the loader from tracefs).
#[unsafe(no_mangle)]
static OOM_DETAILS: Global<u32> = Global::new(0);

/// `oom:mark_victim`: the OOM killer chose the process `pid`.
#[tracepoint]
pub fn mark_victim(ctx: TracePointContext) -> u32 {
    let pid: i32 = field(&ctx, layout::VICTIM_PID);
    let known = OOM_DETAILS.load();
    let mut victim = OomVictim {
        known,
        ..OomVictim::default()
    };
    if known & oom::KNOWS_RSS != 0 {
        victim.anon_kib = optional(&ctx, layout::VICTIM_ANON);
        victim.file_kib = optional(&ctx, layout::VICTIM_FILE);
        victim.shmem_kib = optional(&ctx, layout::VICTIM_SHMEM);
    }
    if known & oom::KNOWS_UID != 0 {
        victim.uid = optional(&ctx, layout::VICTIM_UID);
    }
    if known & oom::KNOWS_COMM != 0 {
        // `__data_loc`: the name's offset in the record in the low 16 bits, its length above.
        let location: u32 = optional(&ctx, layout::VICTIM_COMM);
        // SAFETY: a probe read within the record, checked by the helper; a failed one leaves
        // the name empty.
        victim.comm =
            unsafe { ctx.read_at::<[u8; 16]>((location & 0xffff) as usize) }.unwrap_or([0; 16]);
    }
    let report = OomReport {
        event: Event {
            kind: event_kind::OOM_KILL,
            tgid: pid as u32,
            rss: 0,
            time_ns: now_ns(),
        },
        victim,
    };
    send(&report);
    0
}

/// Reads a field that not every kernel's record has, with a probe read: a direct load past
/// the end of the oldest kernels' record would have the program refused there when it is
/// attached, even though it is read only where the field exists.
#[inline(always)]
fn optional<T: Copy + Default>(ctx: &TracePointContext, field: Field) -> T {
    // SAFETY: the loader has found the field at this offset in this kernel's record; the
    // helper checks the read.
    unsafe { ctx.read_at::<T>(field.offset) }.unwrap_or_default()
}
