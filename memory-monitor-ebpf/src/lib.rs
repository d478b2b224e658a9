//! What memory-monitor's BPF programs and its userspace loader share: the `#[repr(C)]` records
//! in their maps and ring buffer, the flags and codes inside them, and the tracepoint record
//! layouts the programs are compiled against (which the loader checks against the running
//! kernel before loading).
//!
//! The crate is `no_std` so the BPF programs (`src/main.rs`, built for `bpfel-unknown-none` by
//! memory-monitor's build script) can use it; with the `user` feature the records implement
//! `aya::Pod` so userspace can read and write them in maps.
#![no_std]

/// The kernel's per-mm RSS counters, as numbered in `kmem:rss_stat`'s `member` field.
pub mod member {
    /// File-backed pages.
    pub const FILE: usize = 0;
    /// Anonymous pages.
    pub const ANON: usize = 1;
    /// Swap entries: not resident, so not part of RSS; counted for rules that count swap.
    pub const SWAPENTS: usize = 2;
    /// Shared-memory (shmem/tmpfs) pages.
    pub const SHMEM: usize = 3;
    /// How many counters there are.
    pub const COUNT: usize = 4;
}

/// One watched process, in the `WATCHED` map (key: its tgid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watch {
    /// Approximate RSS (bytes) at or above which the kernel side reports the process: the
    /// limit minus the most the kernel's per-CPU counters can be off, so that userspace gets
    /// to judge the exact figure before the exact figure can be over.
    pub trigger: u64,
    /// The limit itself (bytes), for `--kernel-signal`.
    pub limit: u64,
    /// The last size (bytes) reported for each counter, indexed by [`member`].
    pub members: [i64; member::COUNT],
    /// `bpf_ktime_get_ns()` of the last event sent for this process.
    pub last_event_ns: u64,
    /// The process's memory map as the RSS program names it (the tracepoint's hashed mm id,
    /// or the mm pointer for `tp_btf`), learned from its own changes (0: not yet), so that
    /// changes made from other contexts (reclaim, khugepaged, `process_vm_writev`) can be
    /// attributed.
    pub mm: u64,
    /// `WATCH_*` flags.
    pub flags: u32,
    /// Growth profile (`--profile-at`): bytes grown since the last stack sample.
    pub grown: u32,
    /// Its thread count as last seen (by userspace at the start, then by the RSS program in
    /// the process's own context): on kernels whose threads cache their RSS changes, each
    /// thread may hold back up to a batch of them, so the trigger comes down by that much per
    /// thread.
    pub threads: u32,
    /// Leak trends ([`WATCH_WAYPOINTS`]): the last waypoint reported, as its index plus one
    /// (0: none yet). A waypoint is a whole [`waypoint::SHARE`] of the limit; kept here only,
    /// written by the RSS program.
    pub waypoint: u32,
    /// The process's memory map (its `struct mm_struct *`), learned from its own changes (0:
    /// not yet), for the exact reading ([`exact`]).
    pub mm_ptr: u64,
    /// Its thread group's `struct signal_struct *`, learned likewise where threads cache
    /// their changes: the list of its threads, whose caches the exact reading adds up.
    pub group: u64,
    /// Per-CPU counters: where its counters' per-CPU parts are, learned likewise, when they
    /// lie side by side (one `s32` per member, as the kernel allocates them from 6.7), so
    /// that one read a CPU gets them all; 0 otherwise.
    pub parts: u64,
    /// Growth profile: sample the stacks that grow the process from this approximate RSS on
    /// (`u64::MAX`: never).
    pub profile_from: u64,
    /// How far under the limit its rule's warning level is (bytes; 0: no warning level).
    /// The warning's trigger is the same distance under `trigger`, so the two levels are
    /// judged with the same margin from one set of figures.
    pub warn_below: u64,
    /// `--kernel-signal`: the signal the kernel side sends at the limit (0: none).
    pub signal: u32,
    /// The index of the rule the process is watched under (for userspace's bookkeeping).
    pub rule: u32,
}

/// A growth sample's key in the `GROWTH` map: the process and the user stack (an id in the
/// `STACKS` map) that grew its memory.
pub fn growth_key(tgid: u32, stack_id: u32) -> u64 {
    (u64::from(tgid) << 32) | u64::from(stack_id)
}

/// The next time the approximate RSS is at or above the trigger, report it (one event per
/// crossing: the flag is cleared when the event is sent, and set again by userspace after it
/// has confirmed the exact RSS is under the limit, or by the kernel side when the approximate
/// RSS falls back under the trigger).
pub const WATCH_ARMED: u32 = 1;
/// Watched because of its name, so a rename or exec to another name ends the watch; without
/// it the process was named by PID.
pub const WATCH_BY_NAME: u32 = 2;
/// `--kernel-signal` has signalled this process in this episode.
pub const WATCH_KERNEL_SIGNALLED: u32 = 4;
/// Its rule counts swap (`--count rss+swap`): swap entries count toward the trigger and limit.
pub const WATCH_COUNT_SWAP: u32 = 8;
/// Within its margin the kernel side sums the counters' per-CPU parts itself ([`exact`]) and
/// reports the process only once that exact figure is over the limit: only true crossings.
pub const WATCH_SUMS_CPUS: u32 = 16;
/// As [`WATCH_ARMED`], for the warning level ([`Watch::warn_below`]).
pub const WATCH_WARN_ARMED: u32 = 32;
/// As [`WATCH_ARMED`], for its share of its rule's group budget ([`Share`]).
pub const WATCH_SHARE_ARMED: u32 = 64;
/// Its rule has a group budget (`group-limit`): the process is judged against its [`Share`]
/// of it, where userspace has written one.
pub const WATCH_GROUPED: u32 = 128;

/// A process's share of its rule's group budget, in the `GROUP_SHARES` map (key: its tgid),
/// written by userspace only. The members' shares add up to the budget, so the group cannot
/// go over it without one member going over its share, which is reported as a crossing
/// ([`event_kind::SHARE_NEAR`]); userspace then reads the whole group and shares it out anew.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Share {
    /// Approximate RSS (bytes) at or above which the process is reported, as
    /// [`Watch::trigger`] is for the limit (less each thread's lag).
    pub trigger: u64,
    /// The share itself: an exact figure greater than it is over it.
    pub at: u64,
}

/// Its rule follows leak trends: each crossing of another [`waypoint`] is reported.
pub const WATCH_WAYPOINTS: u32 = 256;

/// Leak trends' waypoints: the fixed shares of its limit a watched process passes on its way
/// up or down, reported as it crosses each ([`event_kind::WAYPOINT`]), so that userspace gets a
/// growth timeline without polling and without a wake-up while memory is flat. Coarse on
/// purpose: judged on the kernel's approximate counters, one event per share of the limit.
pub mod waypoint {
    /// The limit's share between two waypoints: one 32nd (`limit >> SHIFT`).
    pub const SHIFT: u32 = 5;
    /// How many waypoints lie under the limit.
    pub const SHARE: u64 = 1 << SHIFT;
    /// The highest index reported (twice the limit); above it the process is far over.
    pub const TOP: u64 = 2 * SHARE;

    /// The waypoint to report for approximate RSS `rss` against a watch whose `last` is the
    /// last reported one's index plus one (0: none yet) with waypoints `step` bytes apart;
    /// `None` when there is nothing new to say. Up, each whole step crossed is one; down, the
    /// RSS must fall half a step under the last waypoint first, so that a process hovering at
    /// one does not report it on every page.
    #[inline(always)]
    pub fn due(rss: u64, last: u32, step: u64) -> Option<u32> {
        if step == 0 {
            return None;
        }
        let index = (rss / step).min(TOP);
        // Past the last one (every index is, when there is none yet), or half a step under it.
        // (Few branches: the verifier walks each on every path through the RSS program.)
        let at = u64::from(last).wrapping_sub(1);
        let down = rss.wrapping_add(step / 2) < at.wrapping_mul(step);
        match index >= u64::from(last) || down {
            true => Some(index as u32),
            false => None,
        }
    }
}

/// The levels a watch is judged against, each reported once per crossing and re-armed on its
/// own ([`rearm_key`]).
pub mod level {
    /// The limit.
    pub const LIMIT: u32 = 0;
    /// The warning level, under the limit.
    pub const WARNING: u32 = 1;
    /// Its share of its rule's group budget.
    pub const SHARE: u32 = 2;
}

/// A re-arm request's key in the `REARM` map: the process and the [`level`] it re-arms.
pub fn rearm_key(tgid: u32, level: u32) -> u64 {
    (u64::from(level) << 32) | u64::from(tgid)
}

/// The exact RSS as the kernel side reads it: the counters the kernel keeps for a memory map,
/// plus what they do not yet hold. Which part that is depends on how the kernel counts
/// ([`exact::SUM_CPU_PARTS`], [`exact::SUM_THREAD_CACHES`]); either is a sum over a few
/// dozen places, never a walk of the process's page tables.
pub mod exact {
    /// No exact reading on this kernel side.
    pub const SUM_NONE: u32 = 0;
    /// Per-CPU counters (6.2 on): each counter's count plus its part on every possible CPU,
    /// as the kernel's own `percpu_counter_sum` adds them.
    pub const SUM_CPU_PARTS: u32 = 1;
    /// Per-thread caches (up to 6.1): the map's counters plus what each of the process's
    /// threads has cached and not yet folded in (`task_struct.rss_stat`).
    pub const SUM_THREAD_CACHES: u32 = 2;
    /// The reading program's answer when it cannot tell (the process is not watched, its map
    /// not learned yet, or it has more threads than the reading walks).
    pub const NOT_KNOWN: u32 = u32::MAX;
    /// Most CPUs whose parts are summed (more possible CPUs: no per-CPU sum).
    pub const MAX_CPUS: u32 = 1024;
    /// Threads whose caches one round of the walk sums: the reading program runs a round,
    /// then tail-calls itself for the next, up to the kernel's 33 tail calls (so up to 2,176
    /// threads; more: the reading cannot tell). Short, as verifiers walk every round of a
    /// loop, and kernels before 5.17 have no `bpf_loop` to spare them.
    pub const THREADS_A_ROUND: u32 = 64;
    /// A thread's `rss_stat.events` from the fault that folds its cache into the map's
    /// counters until the fold is done (`TASK_RSS_EVENTS_THRESH` + 2: the count passes the
    /// threshold, then the fold zeroes it). The fold adds a member's cache to the map's count,
    /// then zeroes the cache: read in between, the same pages are in both. So a folding
    /// thread's cache is left out of the sum, which can then be short of the truth, never
    /// over it. (The fold fires `kmem:rss_stat`, so the reading that follows a report often
    /// lands right in it.)
    pub const FOLDING_EVENTS: i32 = 66;
    /// `PF_EXITING` in `task_struct.flags`: the thread is exiting, and folds its cache in at
    /// any moment (`exit_mm`) with no sign in `events`; its cache is left out for the same
    /// reason.
    pub const PF_EXITING: u32 = 0x4;
}

/// Where the exact reading's walk of a process's threads stands between two of its rounds, in
/// the `THREAD_WALK` map (kernel side only).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadWalk {
    /// The reading it belongs to (userspace numbers each one).
    pub reading: u64,
    /// The head of the process's list of threads (`signal_struct.thread_head`).
    pub head: u64,
    /// The next thread's place in that list (`task_struct.thread_node`).
    pub node: u64,
    /// Each member's sum so far, in pages: the map's counts, plus the caches walked.
    pub sums: [i64; member::COUNT],
}

impl Watch {
    /// Bytes that count, by the kernel's approximate counters: file + anon + shmem, and swap
    /// entries when [`WATCH_COUNT_SWAP`] says so.
    pub fn approximate_rss(&self) -> u64 {
        let resident = |m: usize| self.members[m].max(0) as u64;
        let swap = match self.flags & WATCH_COUNT_SWAP {
            0 => 0,
            _ => resident(member::SWAPENTS),
        };
        resident(member::FILE) + resident(member::ANON) + resident(member::SHMEM) + swap
    }

    /// The approximate RSS at or above which the process is reported: [`Watch::trigger`],
    /// less `thread_lag` bytes for each of its threads (0 where threads cache nothing).
    #[inline(always)]
    pub fn trigger_with(&self, thread_lag: u64) -> u64 {
        self.trigger.saturating_sub(self.lag_of_threads(thread_lag))
    }

    /// How far its threads' caches may hold its counters back: `thread_lag` bytes for each.
    #[inline(always)]
    pub fn lag_of_threads(&self, thread_lag: u64) -> u64 {
        // Clamped so the product cannot overflow (a saturating multiply needs 128-bit
        // arithmetic, which BPF has not): more threads than a kernel allows, a lag of 4 GiB.
        let threads = u64::from(self.threads.clamp(1, 1 << 22));
        threads.wrapping_mul(thread_lag.min(1 << 32))
    }
}

/// What an [`Event`] reports.
pub mod event_kind {
    /// The approximate RSS reached the trigger while armed: confirm with the exact figure.
    pub const NEAR: u32 = 1;
    /// The approximate RSS fell back under the trigger (the watch re-armed itself).
    pub const UNDER: u32 = 2;
    /// `--kernel-signal` sent the signal from the process's own context.
    pub const KERNEL_SIGNAL: u32 = 3;
    /// The process called exec, and its new name may matter: userspace decides on it anew.
    pub const EXEC: u32 = 4;
    /// A watched process forked a new process (`tgid`), watched under the parent's rule.
    pub const FORK: u32 = 5;
    /// The process (or a thread: `tgid` is then a thread id) was renamed, and its new name
    /// may matter: userspace decides on it anew.
    pub const RENAME: u32 = 6;
    /// A watched process ended (its last thread exited).
    pub const EXIT: u32 = 7;
    /// A task moved to another cgroup (`tgid` is the task's id); userspace decides.
    pub const MIGRATE: u32 = 8;
    /// A process's credentials changed (`setuid`, a setuid program's exec) and its name
    /// matches a rule that selects by user or leaves users out, or it is watched: userspace
    /// decides on it anew.
    pub const CREDS: u32 = 9;
    /// The kernel's OOM killer chose a process (`tgid`, watched or not) to kill: the record
    /// is an [`OomReport`](super::OomReport), which starts with the event.
    pub const OOM_KILL: u32 = 10;
    /// As [`NEAR`], for the warning level.
    pub const WARN_NEAR: u32 = 11;
    /// As [`UNDER`], for the warning level.
    pub const WARN_UNDER: u32 = 12;
    /// As [`NEAR`], for its share of its rule's group budget ([`Share`](super::Share)):
    /// userspace reads the group.
    pub const SHARE_NEAR: u32 = 14;
    /// As [`UNDER`], for its share.
    pub const SHARE_UNDER: u32 = 15;
    /// A process whose rule follows leak trends crossed a [`waypoint`](super::waypoint), up or
    /// down: `rss` is its approximate RSS then.
    pub const WAYPOINT: u32 = 13;

    /// A short name for logs.
    pub fn name(kind: u32) -> &'static str {
        match kind {
            NEAR => "near",
            UNDER => "under",
            KERNEL_SIGNAL => "kernel-signal",
            EXEC => "exec",
            FORK => "fork",
            RENAME => "rename",
            EXIT => "exit",
            MIGRATE => "migrate",
            CREDS => "creds",
            OOM_KILL => "oom-kill",
            WARN_NEAR => "warn-near",
            WARN_UNDER => "warn-under",
            SHARE_NEAR => "share-near",
            SHARE_UNDER => "share-under",
            WAYPOINT => "waypoint",
            _ => "unknown",
        }
    }
}

/// Whether a name matches, as far as the kernel side can tell ([`Rule::check`]).
pub mod verdict {
    /// It matches; the kernel side now watches it.
    pub const YES: u32 = 1;
    /// It does not match; the kernel side stopped watching it if it did by name.
    pub const NO: u32 = 2;
    /// Only userspace can tell (regex or command-line match, a name longer than `comm`, or a
    /// cgroup the kernel side cannot check from where it runs).
    pub const ASK: u32 = 3;
}

/// One record in the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// An [`event_kind`].
    pub kind: u32,
    /// The process (thread-group id) concerned.
    pub tgid: u32,
    /// Approximate RSS (bytes) when the event was sent, for RSS events.
    pub rss: u64,
    /// `bpf_ktime_get_ns()` when the event was sent.
    pub time_ns: u64,
}

/// What the kernel said of an OOM-killed process, in an [`OomReport`]: which of its fields
/// this kernel's `oom:mark_victim` record has (5.10 and 6.1 give only the PID).
pub mod oom {
    /// `anon_rss`, `file_rss` and `shmem_rss` (KiB) are the kernel's.
    pub const KNOWS_RSS: u32 = 1;
    /// `uid` is the kernel's.
    pub const KNOWS_UID: u32 = 2;
    /// `comm` is the kernel's.
    pub const KNOWS_COMM: u32 = 4;
}

/// The kernel's OOM killer chose a victim (`oom:mark_victim`): one record in the `EVENTS` ring
/// buffer, longer than an [`Event`] and starting with one (kind [`event_kind::OOM_KILL`]), so
/// that the ring buffer's reader takes it as an event first. The tracepoint fires in the OOM
/// killer's context, not the victim's: everything here is the record's, never `current`'s.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OomReport {
    /// The event: `tgid` is the victim.
    pub event: Event,
    /// The rest of what the kernel said.
    pub victim: OomVictim,
}

/// What `oom:mark_victim` says of the victim beyond its PID, where the kernel says it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OomVictim {
    /// [`oom`] flags: which fields below are the kernel's (the others are zero).
    pub known: u32,
    /// Its user (`uid`).
    pub uid: u32,
    /// Resident anonymous memory at the kill, KiB.
    pub anon_kib: u64,
    /// Resident file-backed memory, KiB.
    pub file_kib: u64,
    /// Resident shared memory, KiB.
    pub shmem_kib: u64,
    /// Its name (`comm`, NUL-padded).
    pub comm: [u8; 16],
}

/// Most rules a configuration may have (the kernel side checks them in a bounded loop).
pub const MAX_RULES: usize = 32;

/// One rule as the kernel side applies it on exec and rename, in the `RULES` array, in the
/// order userspace matches them (the first that matches wins). `prefix` and `exact` names it
/// decides itself; everything else it asks userspace about. A rule that also names a cgroup
/// matches only tasks under the cgroup at the same index of the `CGROUPS` array.
///
/// The name is compared as two 64-bit words under masks worked out once by [`Rule::named`],
/// not byte by byte: a handful of instructions without a branch or a variable index, which
/// every verifier accepts at a small cost even in a loop over all the rules.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// A `RULE_*` mode; `RULE_NONE` ends the list.
    pub mode: u32,
    /// `CGROUP_*` flags: how the rule depends on the task's cgroup.
    pub cgroup: u32,
    /// The name (at most 15 bytes), NUL-padded, as two little-endian words.
    pub name: [u64; 2],
    /// 0xff in each byte of `name` that counts.
    pub name_mask: [u64; 2],
    /// 0xff in the byte just after the name, which a `comm` equal to the name has NUL.
    pub end_mask: [u64; 2],
    /// `--kernel-signal`: the signal to send at the limit (0: none).
    pub signal: u32,
    /// 1 when a matching name only means userspace is asked ([`verdict::ASK`], never
    /// [`verdict::YES`]): the rule also selects by user or leaves processes out, which
    /// userspace judges, so the kernel side never watches a process it might refuse.
    pub defer: u32,
    /// `WATCH_*` flags every watch under this rule gets ([`WATCH_COUNT_SWAP`]).
    pub watch_flags: u32,
    /// Keeps `trigger` on its 8 bytes with no hidden padding (the record is copied whole).
    pub reserved: u32,
    /// [`Watch::trigger`] for processes this rule admits (`u64::MAX` while userspace has to
    /// work the limit out per process).
    pub trigger: u64,
    /// [`Watch::limit`] for them.
    pub limit: u64,
    /// [`Watch::profile_from`] for them.
    pub profile_from: u64,
    /// [`Watch::warn_below`] for them (0 while userspace has to work the limit out per
    /// process).
    pub warn_below: u64,
}

/// The task must be under the rule's cgroup (same index in `CGROUPS`).
pub const CGROUP_MEMBER: u32 = 1;
/// The rule's limit is a share of the task's cgroup's memory limit, so a move to another
/// cgroup changes it.
pub const CGROUP_LIMIT: u32 = 2;

/// No rule (the end of the list).
pub const RULE_NONE: u32 = 0;
/// `comm` starts with the name.
pub const RULE_PREFIX: u32 = 1;
/// `comm` is the name.
pub const RULE_EXACT: u32 = 2;
/// Ask userspace about every exec and rename.
pub const RULE_ASK: u32 = 3;
/// Ask userspace when `comm` equals the name (a longer name cut to `comm`'s 15 bytes).
pub const RULE_ASK_IF_EQUAL: u32 = 4;
/// Any name (a rule that selects by cgroup alone).
pub const RULE_ANY: u32 = 5;
/// No name (a rule that selects only by PID, or whose cgroup does not exist).
pub const RULE_NEVER: u32 = 6;

/// A process name (`comm`, NUL-padded) as two little-endian words, as [`Rule::check`] reads it.
pub fn comm_words(comm: &[u8; 16]) -> [u64; 2] {
    let mut low = [0; 8];
    let mut high = [0; 8];
    low.copy_from_slice(&comm[..8]);
    high.copy_from_slice(&comm[8..]);
    [u64::from_le_bytes(low), u64::from_le_bytes(high)]
}

impl Rule {
    /// A rule of `mode` on `name` (its first 15 bytes count), the masks worked out.
    pub fn named(mode: u32, name: &[u8]) -> Rule {
        let len = name.len().min(15);
        let mut bytes = [0u8; 16];
        bytes[..len].copy_from_slice(&name[..len]);
        let mut mask = [0u8; 16];
        mask[..len].fill(0xff);
        let mut end = [0u8; 16];
        end[len] = 0xff;
        Rule {
            mode,
            name: comm_words(&bytes),
            name_mask: comm_words(&mask),
            end_mask: comm_words(&end),
            ..Rule::default()
        }
    }

    /// What the rule's name says about `comm` (as [`comm_words`]).
    #[inline(always)]
    pub fn check(&self, comm: &[u64; 2]) -> u32 {
        let differs = ((comm[0] ^ self.name[0]) & self.name_mask[0])
            | ((comm[1] ^ self.name[1]) & self.name_mask[1]);
        let same = differs == 0;
        let ends_here = (comm[0] & self.end_mask[0]) | (comm[1] & self.end_mask[1]) == 0;
        // YES, or ASK when deferred: arithmetic, not a branch (cheaper for the verifier).
        let yes = verdict::YES + (self.defer & 1) * (verdict::ASK - verdict::YES);
        match self.mode {
            RULE_PREFIX if same => yes,
            RULE_EXACT if same && ends_here => yes,
            RULE_ASK => verdict::ASK,
            RULE_ASK_IF_EQUAL if same && ends_here => verdict::ASK,
            RULE_ANY => yes,
            _ => verdict::NO,
        }
    }
}

/// Where a field sits in a tracepoint record. The programs read fields at these offsets; the
/// loader compares them with the kernel's `events/<tracepoint>/format` files first, so a kernel
/// with another layout is refused with a clear reason instead of being misread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// `category/name`, as under tracefs `events/`.
    pub tracepoint: &'static str,
    /// The field's name in the format file.
    pub name: &'static str,
    /// Byte offset in the record.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
}

/// The tracepoint fields the programs read.
pub mod layout {
    use super::Field;

    const fn field(
        tracepoint: &'static str,
        name: &'static str,
        offset: usize,
        size: usize,
    ) -> Field {
        Field {
            tracepoint,
            name,
            offset,
            size,
        }
    }

    /// `kmem:rss_stat` `mm_id`: a hash of the mm pointer.
    pub const RSS_MM_ID: Field = field("kmem/rss_stat", "mm_id", 8, 4);
    /// `kmem:rss_stat` `curr`: 1 when the change is made by a task of that mm.
    pub const RSS_CURR: Field = field("kmem/rss_stat", "curr", 12, 4);
    /// `kmem:rss_stat` `member`: which counter.
    pub const RSS_MEMBER: Field = field("kmem/rss_stat", "member", 16, 4);
    /// `kmem:rss_stat` `size`: the counter's value in bytes.
    pub const RSS_SIZE: Field = field("kmem/rss_stat", "size", 24, 8);
    /// `task:task_newtask` `pid`: the new task.
    pub const NEWTASK_PID: Field = field("task/task_newtask", "pid", 8, 4);
    /// `task:task_newtask` `clone_flags`: tells a new process from a new thread.
    pub const NEWTASK_CLONE_FLAGS: Field = field("task/task_newtask", "clone_flags", 32, 8);
    /// `task:task_rename` `pid`: the renamed task.
    pub const RENAME_PID: Field = field("task/task_rename", "pid", 8, 4);
    /// `task:task_rename` `newcomm`.
    pub const RENAME_NEWCOMM: Field = field("task/task_rename", "newcomm", 28, 16);
    /// `sched:sched_process_exit` `group_dead`: the last thread of the process is exiting
    /// (6.16 on; where it is missing, the exit program reads the thread group's live count).
    pub const EXIT_GROUP_DEAD: Field = field("sched/sched_process_exit", "group_dead", 32, 1);
    /// `cgroup:cgroup_attach_task` `dst_root`: the hierarchy (0: cgroup v2).
    pub const ATTACH_ROOT: Field = field("cgroup/cgroup_attach_task", "dst_root", 8, 4);
    /// `cgroup:cgroup_attach_task` `pid`: the task moved.
    pub const ATTACH_PID: Field = field("cgroup/cgroup_attach_task", "pid", 24, 4);

    /// `oom:mark_victim` `pid`: the process the OOM killer chose (the one field every kernel
    /// has; without it, OOM kills are not followed).
    pub const VICTIM_PID: Field = field("oom/mark_victim", "pid", 8, 4);
    /// `oom:mark_victim` `comm`: where its name is in the record (`__data_loc`: the low 16
    /// bits are the offset).
    pub const VICTIM_COMM: Field = field("oom/mark_victim", "comm", 12, 4);
    /// `oom:mark_victim` `anon_rss` (KiB).
    pub const VICTIM_ANON: Field = field("oom/mark_victim", "anon_rss", 24, 8);
    /// `oom:mark_victim` `file_rss` (KiB).
    pub const VICTIM_FILE: Field = field("oom/mark_victim", "file_rss", 32, 8);
    /// `oom:mark_victim` `shmem_rss` (KiB).
    pub const VICTIM_SHMEM: Field = field("oom/mark_victim", "shmem_rss", 40, 8);
    /// `oom:mark_victim` `uid`.
    pub const VICTIM_UID: Field = field("oom/mark_victim", "uid", 48, 4);

    /// The fields of `oom:mark_victim` read where this kernel has them, each with the
    /// [`oom`](super::oom) flag it gives (all the RSS fields for [`KNOWS_RSS`](super::oom::KNOWS_RSS)).
    pub const VICTIM_DETAILS: [(Field, u32); 5] = [
        (VICTIM_COMM, super::oom::KNOWS_COMM),
        (VICTIM_ANON, super::oom::KNOWS_RSS),
        (VICTIM_FILE, super::oom::KNOWS_RSS),
        (VICTIM_SHMEM, super::oom::KNOWS_RSS),
        (VICTIM_UID, super::oom::KNOWS_UID),
    ];

    /// Every field the programs always read (`EXIT_GROUP_DEAD` is read where present).
    pub const ALL: [Field; 10] = [
        RSS_MM_ID,
        RSS_CURR,
        RSS_MEMBER,
        RSS_SIZE,
        NEWTASK_PID,
        NEWTASK_CLONE_FLAGS,
        RENAME_PID,
        RENAME_NEWCOMM,
        ATTACH_ROOT,
        ATTACH_PID,
    ];
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` data of integers and byte arrays, valid for any bit pattern,
    // with no padding (checked by the size assertions below).
    unsafe impl aya::Pod for super::Watch {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Event {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Rule {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::OomReport {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Share {}

    const _: () = assert!(core::mem::size_of::<super::Watch>() == 128);
    const _: () = assert!(core::mem::size_of::<super::Event>() == 24);
    const _: () = assert!(core::mem::size_of::<super::Rule>() == 104);
    const _: () = assert!(core::mem::size_of::<super::OomReport>() == 72);
    const _: () = assert!(core::mem::size_of::<super::Share>() == 16);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comm(name: &[u8]) -> [u8; 16] {
        let mut comm = [0; 16];
        comm[..name.len()].copy_from_slice(name);
        comm
    }

    fn rule(mode: u32, name: &[u8]) -> Rule {
        Rule::named(mode, name)
    }

    fn check(rule: &Rule, name: &[u8]) -> u32 {
        rule.check(&comm_words(&comm(name)))
    }

    #[test]
    fn prefix_and_exact_rules_decide_in_the_kernel() {
        let prefix = rule(RULE_PREFIX, b"my-app");
        assert_eq!(check(&prefix, b"my-app"), verdict::YES);
        assert_eq!(check(&prefix, b"my-app-worker"), verdict::YES);
        assert_eq!(check(&prefix, b"my-ap"), verdict::NO);
        assert_eq!(check(&prefix, b"other"), verdict::NO);
        let exact = rule(RULE_EXACT, b"my-app");
        assert_eq!(check(&exact, b"my-app"), verdict::YES);
        assert_eq!(check(&exact, b"my-app2"), verdict::NO);
        assert_eq!(check(&exact, b"my-ap"), verdict::NO);
        let full = rule(RULE_EXACT, b"exactly15bytes!");
        assert_eq!(check(&full, b"exactly15bytes!"), verdict::YES);
        assert_eq!(check(&full, b"exactly15bytes?"), verdict::NO);
        // Both words count: a difference past the eighth byte is a difference.
        let long = rule(RULE_PREFIX, b"mm-target-123");
        assert_eq!(check(&long, b"mm-target-124"), verdict::NO);
        assert_eq!(check(&long, b"mm-target-1234"), verdict::YES);
        let empty = rule(RULE_PREFIX, b"");
        assert_eq!(check(&empty, b"anything"), verdict::YES);
    }

    #[test]
    fn other_rules_ask_userspace() {
        assert_eq!(check(&rule(RULE_ASK, b""), b"anything"), verdict::ASK);
        let long = rule(RULE_ASK_IF_EQUAL, b"my-application-");
        assert_eq!(check(&long, b"my-application-"), verdict::ASK);
        assert_eq!(check(&long, b"my-application"), verdict::NO);
        assert_eq!(check(&Rule::default(), b"x"), verdict::NO);
        assert_eq!(check(&rule(RULE_ANY, b""), b"x"), verdict::YES);
    }

    #[test]
    fn a_deferred_rule_asks_where_it_would_decide() {
        let deferred = |mode, name: &[u8]| Rule {
            defer: 1,
            ..rule(mode, name)
        };
        assert_eq!(
            check(&deferred(RULE_PREFIX, b"my-app"), b"my-app-1"),
            verdict::ASK
        );
        assert_eq!(
            check(&deferred(RULE_PREFIX, b"my-app"), b"other"),
            verdict::NO
        );
        assert_eq!(
            check(&deferred(RULE_EXACT, b"my-app"), b"my-app"),
            verdict::ASK
        );
        assert_eq!(
            check(&deferred(RULE_EXACT, b"my-app"), b"my-app2"),
            verdict::NO
        );
        assert_eq!(check(&deferred(RULE_ANY, b""), b"x"), verdict::ASK);
    }

    #[test]
    fn the_trigger_comes_down_by_the_lag_of_every_thread() {
        let watch = Watch {
            trigger: 1000,
            threads: 3,
            ..Watch::default()
        };
        assert_eq!(watch.trigger_with(0), 1000);
        assert_eq!(watch.trigger_with(100), 700);
        assert_eq!(watch.trigger_with(400), 0);
        let unknown = Watch {
            trigger: 1000,
            ..Watch::default()
        };
        assert_eq!(unknown.trigger_with(100), 900, "at least one thread");
    }

    #[test]
    fn waypoints_are_reported_once_each_way_with_half_a_step_of_hysteresis() {
        let step = 100;
        // The first change says where the process is.
        assert_eq!(waypoint::due(250, 0, step), Some(2));
        // Last at waypoint 3 (300; recorded as 4): within it, or less than half a step under
        // it, nothing.
        assert_eq!(waypoint::due(399, 4, step), None);
        assert_eq!(waypoint::due(260, 4, step), None);
        // Up past the next one: reported, however many were crossed.
        assert_eq!(waypoint::due(400, 4, step), Some(4));
        assert_eq!(waypoint::due(720, 4, step), Some(7));
        // Down: only half a step under it.
        assert_eq!(waypoint::due(249, 4, step), Some(2));
        assert_eq!(waypoint::due(149, 4, step), Some(1));
        // Far over the limit: capped.
        assert_eq!(waypoint::due(u64::MAX, 0, step), Some(waypoint::TOP as u32));
        // No limit to speak of: nothing.
        assert_eq!(waypoint::due(250, 0, 0), None);
    }

    #[test]
    fn approximate_rss_leaves_out_swap() {
        let watch = Watch {
            members: [10, 20, 1000, 5],
            ..Watch::default()
        };
        assert_eq!(watch.approximate_rss(), 35);
        let negative = Watch {
            members: [-4, 20, 0, 0],
            ..Watch::default()
        };
        assert_eq!(negative.approximate_rss(), 20);
    }
}
