//! Which processes are watched, kept current without polling: a process that execs or
//! renames itself to a matching name is watched, a watched process's fork is watched, a task
//! moved to another cgroup is asked about (when a rule names a cgroup), as is one whose
//! credentials changed (when a rule selects by user), and an exited one is forgotten.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::tracepoint,
    programs::TracePointContext,
};
use aya_log_ebpf::warn;
use memory_monitor_ebpf::{
    CGROUP_LIMIT, CGROUP_MEMBER, MAX_RULES, RULE_NONE, Rule, WATCH_BY_NAME, Watch, comm_words,
    event_kind, layout, level, rearm_key, verdict,
};

use crate::budget;
use crate::{
    CGROUPS, CLONE_THREAD, EXIT_HAS_GROUP_DEAD, MM_OWNER, OWNED_MM, REARM, RULE_WATCH_FLAGS, RULES,
    SIGNAL_CLAIMS, SIGNAL_LIVE_OFFSET, WATCHED, array_field, count_mm, current_signal,
    current_tgid, emit, excluded, field, fresh, maybe_watched,
};

/// A fresh watch under rule `index`.
fn new_watch(index: u32, flags: u32) -> Watch {
    let rule = RULES.get(index).copied().unwrap_or_default();
    let model = Watch {
        trigger: rule.trigger,
        limit: rule.limit,
        profile_from: rule.profile_from,
        warn_below: rule.warn_below,
        signal: rule.signal,
        rule: index,
        flags: rule.watch_flags & RULE_WATCH_FLAGS,
        ..Watch::default()
    };
    fresh(&model, flags)
}

/// The verdict and the index of the first rule that `comm` may match: `in_context` when the
/// task concerned is the current one, so its cgroup can be checked here. Only the index comes
/// out of the loop (the rule is looked up again by [`new_watch`]): the less each round keeps,
/// the sooner the verifier finds rounds alike, and the fewer instructions it walks.
#[inline(always)]
fn choose_rule(comm: &[u8; 16], in_context: bool) -> (u32, u32) {
    let comm = comm_words(comm);
    let mut index = 0;
    while index < MAX_RULES as u32 {
        let Some(rule) = RULES.get(index) else {
            break;
        };
        if rule.mode == RULE_NONE {
            break;
        }
        let found = rule.check(&comm);
        if found != verdict::NO {
            if rule.cgroup & CGROUP_MEMBER == 0 {
                return (found, index);
            }
            if !in_context {
                return (verdict::ASK, index);
            }
            if CGROUPS.current_task_under_cgroup(index) == Ok(true) {
                return (found, index);
            }
        }
        index += 1;
    }
    (verdict::NO, 0)
}

/// `syscalls:sys_exit_setuid`, `sys_exit_setreuid`, `sys_exit_setresuid`: the current task
/// may run as another user now. Where a rule selects by user or leaves processes out
/// (`defer`), a process whose name it matches, or one already watched, is asked about: a
/// worker that drops root after it started is found without an exec or a rename to find it
/// by. At the call's exit, so the new credentials are in place when userspace looks (a
/// setuid program's exec is the exec program's).
#[tracepoint]
pub fn creds(_ctx: TracePointContext) -> u32 {
    let tgid = current_tgid();
    if excluded(tgid) || !any_rule_defers() {
        return 0;
    }
    let comm = bpf_get_current_comm().unwrap_or_default();
    let (found, _) = choose_rule(&comm, true);
    // SAFETY: a presence check; nothing is read through the pointer.
    if found != verdict::NO || unsafe { WATCHED.get(tgid) }.is_some() {
        emit(event_kind::CREDS, tgid, 0);
    }
    0
}

/// Whether a rule defers to userspace (it selects by user, or leaves processes out).
#[inline(always)]
fn any_rule_defers() -> bool {
    fold_rules(false, |defers, rule| defers || rule.defer != 0)
}

/// How the rules depend on cgroups: every rule's `CGROUP_*` flags together.
#[inline(always)]
fn cgroup_dependence() -> u32 {
    fold_rules(0, |flags, rule| flags | rule.cgroup)
}

/// Folds `step` over the rules in force, in order: the one bounded loop over `RULES`.
#[inline(always)]
fn fold_rules<T>(init: T, step: impl Fn(T, &Rule) -> T) -> T {
    let mut acc = init;
    let mut index = 0;
    while index < MAX_RULES as u32 {
        match RULES.get(index) {
            Some(rule) if rule.mode != RULE_NONE => acc = step(acc, rule),
            _ => break,
        }
        index += 1;
    }
    acc
}

/// `sched:sched_process_exec`: the current process now runs a new program, maybe under a new name.
#[tracepoint]
pub fn exec(ctx: TracePointContext) -> u32 {
    let tgid = current_tgid();
    if excluded(tgid) {
        return 0;
    }
    // The old program's memory map is gone.
    forget_mm(tgid);
    let comm = bpf_get_current_comm().unwrap_or_default();
    let (found, index) = choose_rule(&comm, true);
    // SAFETY: copied out at once.
    let existing = unsafe { WATCHED.get(tgid) }.copied();
    match (existing, found) {
        // Watched by PID: the same process with a new mm, counted afresh.
        (Some(watch), _) if watch.flags & WATCH_BY_NAME == 0 => {
            watch_new(&ctx, tgid, &fresh(&watch, 0));
        }
        // Still matching: counted afresh, under the rule it matches now.
        (Some(_), verdict::YES) => {
            watch_new(&ctx, tgid, &new_watch(index, WATCH_BY_NAME));
        }
        (Some(_), verdict::NO) => forget(tgid),
        (None, verdict::YES) => watch_new(&ctx, tgid, &new_watch(index, WATCH_BY_NAME)),
        // Only userspace can tell. Until it has, the new program (a setuid one, say) is not
        // signalled by the kernel on the old program's decision (`--kernel-signal`).
        (Some(watch), verdict::ASK) => watch_new(&ctx, tgid, &Watch { signal: 0, ..watch }),
        (None, verdict::ASK) => {}
        _ => return 0,
    }
    emit(event_kind::EXEC, tgid, 0);
    0
}

/// Forgets which mm is `tgid`'s; its map's count with it, unless another process has learned
/// the map since (a `vfork` child's, shared until it execs), whose it is now.
pub(crate) fn forget_mm(tgid: u32) {
    // SAFETY: copied out at once.
    let Some(mm) = unsafe { OWNED_MM.get(tgid) }.copied() else {
        return;
    };
    let _ = OWNED_MM.remove(tgid);
    // SAFETY: as above.
    if unsafe { MM_OWNER.get(mm) }.copied() == Some(tgid) && MM_OWNER.remove(mm).is_ok() {
        count_mm(mm, u32::MAX);
    }
}

fn forget(tgid: u32) {
    forget_mm(tgid);
    let _ = WATCHED.remove(tgid);
    let _ = REARM.remove(rearm_key(tgid, level::LIMIT));
    let _ = REARM.remove(rearm_key(tgid, level::WARNING));
    let _ = REARM.remove(rearm_key(tgid, level::SHARE));
    let _ = SIGNAL_CLAIMS.remove(tgid);
    budget::forget(tgid);
}

fn watch_new<C: aya_ebpf::EbpfContext>(ctx: &C, tgid: u32, watch: &Watch) {
    if WATCHED.insert(tgid, watch, 0).is_err() {
        warn!(ctx, "watch table full: process {} is not watched", tgid);
    }
}

/// `task:task_newtask`: the current process made a task; a new process if not a thread.
#[tracepoint]
pub fn newtask(ctx: TracePointContext) -> u32 {
    let flags: u64 = field(&ctx, layout::NEWTASK_CLONE_FLAGS);
    if flags & CLONE_THREAD != 0 {
        return 0;
    }
    let child: i32 = field(&ctx, layout::NEWTASK_PID);
    let child = child as u32;
    let parent = current_tgid();
    // SAFETY: copied out at once.
    let parent_watch = unsafe { WATCHED.get(parent) }.copied();
    let Some(parent_watch) = parent_watch.filter(|watch| watch.flags & WATCH_BY_NAME != 0) else {
        // The PID was free until now, so a watch found under it belongs to a process that has
        // gone (userspace may re-seed a watch just after the exit program dropped it): drop it
        // before it can act on the newcomer (`--kernel-signal`).
        // SAFETY: only whether there is one.
        if maybe_watched(child) && unsafe { WATCHED.get(child) }.is_some() {
            forget(child);
        }
        return 0;
    };
    // The child starts as a copy of the parent's memory, under the parent's rule.
    let mut watch = fresh(&parent_watch, WATCH_BY_NAME);
    watch.members = parent_watch.members;
    watch_new(&ctx, child, &watch);
    emit(event_kind::FORK, child, watch.approximate_rss());
    0
}

/// `task:task_rename`: a task's name (`comm`) changed.
#[tracepoint]
pub fn rename(ctx: TracePointContext) -> u32 {
    let pid: i32 = field(&ctx, layout::RENAME_PID);
    let pid = pid as u32;
    if excluded(pid) {
        return 0;
    }
    let comm: [u8; 16] = array_field(&ctx, layout::RENAME_NEWCOMM);
    // A task may rename itself (then its cgroup can be checked here) or be renamed by another
    // through /proc/PID/comm.
    let own = bpf_get_current_pid_tgid() as u32 == pid;
    let (found, index) = choose_rule(&comm, own);
    // SAFETY: copied out at once.
    let existing = unsafe { WATCHED.get(pid) }.copied();
    match (existing, found) {
        (Some(watch), verdict::NO) if watch.flags & WATCH_BY_NAME != 0 => {
            forget(pid);
            emit(event_kind::RENAME, pid, 0);
        }
        // Now under another rule: userspace moves it there (limit, signal).
        (Some(watch), verdict::YES) if watch.flags & WATCH_BY_NAME != 0 && watch.rule != index => {
            emit(event_kind::RENAME, pid, 0);
        }
        (None, verdict::YES) => {
            watch_new(&ctx, pid, &new_watch(index, WATCH_BY_NAME));
            emit(event_kind::RENAME, pid, 0);
        }
        (_, verdict::ASK) => emit(event_kind::RENAME, pid, 0),
        _ => {}
    }
    0
}

/// `cgroup:cgroup_attach_task`: a task moved to another cgroup. When a rule names a cgroup or
/// sets its limit as a share of one, userspace decides whether the task's process now matches
/// a rule (or no longer does) and what its limit is. Moves are rare (service and container
/// starts), so asking costs nothing on the hot paths.
#[tracepoint]
pub fn migrate(ctx: TracePointContext) -> u32 {
    let dependence = cgroup_dependence();
    if dependence == 0 {
        return 0;
    }
    // Hierarchy 0 is cgroup v2, where rules' cgroups are; a move in a v1 hierarchy matters
    // only to limits (the memory controller may sit in v1 on hybrid hosts).
    let root: i32 = field(&ctx, layout::ATTACH_ROOT);
    let pid: i32 = field(&ctx, layout::ATTACH_PID);
    if (root != 0 && dependence & CGROUP_LIMIT == 0) || excluded(pid as u32) {
        return 0;
    }
    emit(event_kind::MIGRATE, pid as u32, 0);
    0
}

/// `sched:sched_process_exit`: a task ends; with `group_dead` (or no live thread left in its
/// group), the last of its process.
#[tracepoint]
pub fn exit(ctx: TracePointContext) -> u32 {
    let group_dead = if EXIT_HAS_GROUP_DEAD.load() != 0 {
        field::<u8>(&ctx, layout::EXIT_GROUP_DEAD) != 0
    } else {
        // SAFETY: bpf_probe_read_kernel checks the address; a failed read is not a death.
        let live = unsafe {
            bpf_probe_read_kernel((current_signal() + SIGNAL_LIVE_OFFSET.load()) as *const i32)
        };
        live == Ok(0)
    };
    if !group_dead {
        return 0;
    }
    let tgid = current_tgid();
    // SAFETY: only whether there is one.
    if unsafe { WATCHED.get(tgid) }.is_some() {
        forget(tgid);
        emit(event_kind::EXIT, tgid, 0);
    } else {
        // Let go by userspace, maybe after its map was learned.
        forget_mm(tgid);
    }
    0
}
