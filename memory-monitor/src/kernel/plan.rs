//! The load plan: from what the host offers ([`Host`]) and what the monitor is asked to do
//! ([`Settings`]), every value the programs are loaded with (their globals and map sizes) and
//! which RSS program attaches where. Making one touches nothing, so unit tests check plans
//! without root; a test's injected fault is an edit of the plan ([`Plan::inject`]), and the
//! loader carries out whatever plan it is given.

use memory_monitor_ebpf::{layout, member, oom};

use super::Unavailable;
use super::btf::{ExactRead, KernelBtf, RssRead};
use super::exact_reading::ExactGlobals;
use super::host::Host;
use crate::accounting::Accounting;
use crate::fault::Fault;
use crate::rules::RuleSet;

/// The ring buffer's size: room for thousands of events between two drains.
const RING_BYTES: u32 = 256 * 1024;

/// Growth profile: one stack sample per this many bytes grown.
pub(crate) const GROWTH_SAMPLE_BYTES: u32 = 256 * 1024;
/// Growth profile: distinct stacks and (process, stack) pairs kept.
const GROWTH_STACKS: u32 = 2048;

/// How the RSS program attaches to `kmem:rss_stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// tp-btf where the kernel's BTF describes what it reads (the cheaper: no tracepoint
    /// record is filled in), else tracepoint.
    Auto,
    /// A classic tracepoint: the kernel fills in the tracepoint's record, the program reads it.
    Tracepoint,
    /// A BTF-typed raw tracepoint (`tp_btf`): the program gets the tracepoint's arguments and
    /// reads the counter itself, at offsets found in the kernel's BTF.
    TpBtf,
}

impl crate::choice::Choice for Attach {
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (
            Attach::Auto,
            "auto",
            "tp-btf where the kernel's BTF describes what it reads (the cheaper: no tracepoint record is filled in), else tracepoint",
        ),
        (
            Attach::Tracepoint,
            "tracepoint",
            "A classic tracepoint: the kernel fills in the tracepoint's record, the program reads it",
        ),
        (
            Attach::TpBtf,
            "tp-btf",
            "A BTF-typed raw tracepoint (`tp_btf`): the program gets the tracepoint's arguments and reads the counter itself, at offsets found in the kernel's BTF",
        ),
    ];
}

impl std::fmt::Display for Attach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::choice::write_name(*self, f)
    }
}

/// What the kernel side needs to know.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings<'a> {
    /// The rules to apply on exec and rename.
    pub(crate) rules: &'a RuleSet,
    /// Map capacity.
    pub(crate) max_processes: usize,
    /// `--kernel-signal`: the kernel side sends each rule's signal itself.
    pub(crate) kernel_signal: bool,
    /// How the RSS program attaches.
    pub(crate) attach: Attach,
    /// Whether the programs' own diagnostics (aya-log) are wanted (`-v`); otherwise their ring
    /// buffer is not even mapped.
    pub(crate) debug_log: bool,
    /// `--bpf-stats`: the kernel counts the RSS program's runs while the monitor runs.
    pub(crate) bpf_stats: bool,
}

/// Which program follows the RSS counters, and where it attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RssProgram {
    /// `program` on the classic tracepoint `category:name`.
    Tracepoint {
        program: &'static str,
        category: &'static str,
        name: &'static str,
    },
    /// `program` on the BTF-typed raw tracepoint `name`.
    TpBtf {
        program: &'static str,
        name: &'static str,
    },
}

/// The programs' globals, each under the name the programs give it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Globals {
    /// `MONITOR_TGID`: the monitor, never reported.
    pub(crate) monitor_tgid: u32,
    /// `MONITOR_PARENT_TGID`: its parent, never reported either.
    pub(crate) monitor_parent_tgid: u32,
    /// `TASK_MM_OFFSET`: `offsetof(task_struct, mm)`, 0 without BTF.
    pub(crate) task_mm_offset: u64,
    /// `RSS_COUNT_OFFSETS`: each counter's place in `mm_struct`.
    pub(crate) rss_count_offsets: [u64; member::COUNT],
    /// `PAGE_SIZE`.
    pub(crate) page_size: i64,
    /// `EXIT_HAS_GROUP_DEAD`: whether the exit record says a process's last thread ended.
    pub(crate) exit_has_group_dead: u32,
    /// `TASK_SIGNAL_OFFSET`: where a task's thread group is (0 without BTF's word on it).
    pub(crate) task_signal_offset: u64,
    /// `SIGNAL_LIVE_OFFSET`: where the group counts its threads not yet exiting.
    pub(crate) signal_live_offset: u64,
    /// `SIGNAL_THREADS_OFFSET`: where it counts its threads.
    pub(crate) signal_threads_offset: u64,
    /// `THREAD_LAG`: how far each thread may hold the counters back.
    pub(crate) thread_lag: u64,
    /// `SLOT_MASK`: the pre-filter's slot of a process is `tgid & SLOT_MASK`.
    pub(crate) slot_mask: u32,
    /// `SAMPLE_BYTES`: the growth profile's sampling step.
    pub(crate) sample_bytes: u32,
    /// `COUNT_SWAP`: whether swap-entry changes are followed.
    pub(crate) count_swap: u32,
    /// `OOM_DETAILS`: which of the OOM victim's details this kernel's `oom:mark_victim`
    /// record has (`oom::KNOWS_*`).
    pub(crate) oom_details: u32,
    /// The exact reading's globals (`EXACT_SUM` and what it sums).
    pub(crate) exact: ExactGlobals,
    /// aya-log's level.
    pub(crate) log_level: u8,
}

/// The maps' sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MapSizes {
    /// `EVENTS`, the ring buffer, in bytes.
    pub(crate) ring_bytes: u32,
    /// `WATCHED`, `MM_OWNER`, `OWNED_MM`, `SIGNAL_CLAIMS`, `GROUP_SHARES`: one entry per
    /// watchable process (`REARM`: three, one per level).
    pub(crate) capacity: u32,
    /// `WATCH_SLOTS`, `MM_SLOTS`: the pre-filter's slots.
    pub(crate) slots: u32,
    /// `STACKS`, `GROWTH`: the growth profile's (one entry when no rule profiles).
    pub(crate) growth: u32,
    /// `CPU_OFFSETS`: one per possible CPU.
    pub(crate) cpu_offsets: u32,
}

/// Everything the loader does, decided.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// How the RSS program attaches (never [`Attach::Auto`]).
    pub(crate) attach: Attach,
    /// Which RSS program, where.
    pub(crate) rss_program: RssProgram,
    /// The programs' globals.
    pub(crate) globals: Globals,
    /// The maps' sizes.
    pub(crate) maps: MapSizes,
    /// Whether the programs' log lines are forwarded.
    pub(crate) debug_log: bool,
    /// Whether the growth profile's maps are used (a rule at start-up profiles).
    pub(crate) profiling: bool,
    /// `--kernel-signal`.
    pub(crate) kernel_signal: bool,
    /// `--bpf-stats`.
    pub(crate) bpf_stats: bool,
    /// How this kernel counts RSS.
    pub(crate) accounting: Accounting,
    /// How the exact reading sums a process's RSS here, or why it cannot.
    pub(crate) exact_read: Result<ExactRead, String>,
    /// Whether the kernel's OOM kills can be followed (`oom:mark_victim` names its victim),
    /// or why not.
    pub(crate) oom_kills: Result<(), String>,
}

impl Plan {
    /// The plan for `settings` on `host`; why eBPF mode cannot run here, when it cannot.
    pub(crate) fn new(host: &Host, settings: &Settings<'_>) -> Result<Plan, Unavailable> {
        let kernel_btf = &host.btf;
        let tp_btf = |kernel_btf: &Result<KernelBtf, String>| {
            let kernel_btf = kernel_btf.as_ref().map_err(Clone::clone)?;
            kernel_btf.rss.clone()
        };
        let (attach, btf_read) = match settings.attach {
            Attach::Tracepoint => (Attach::Tracepoint, None),
            Attach::TpBtf => (
                Attach::TpBtf,
                Some(tp_btf(kernel_btf).map_err(Unavailable)?),
            ),
            Attach::Auto => match tp_btf(kernel_btf) {
                Ok(read) => (Attach::TpBtf, Some(read)),
                Err(why) => {
                    tracing::debug!("attaching as a classic tracepoint: {why}");
                    (Attach::Tracepoint, None)
                }
            },
        };
        // The classic RSS program reads kmem:rss_stat's record; tp_btf reads kernel structures.
        // OOM kills are followed where the kernel allows: without them eBPF mode still runs.
        host.check_layout(|f| {
            f != &layout::EXIT_GROUP_DEAD
                && f.tracepoint != layout::VICTIM_PID.tracepoint
                && (attach == Attach::Tracepoint || f.tracepoint != "kmem/rss_stat")
        })
        .map_err(Unavailable)?;
        let oom_kills = host.check_layout(|f| f == &layout::VICTIM_PID);
        // A detail is the kernel's only where every field it takes is where it is expected.
        let oom_details = layout::VICTIM_DETAILS.iter().fold(
            oom::KNOWS_RSS | oom::KNOWS_UID | oom::KNOWS_COMM,
            |known, (field, flag)| match host.check_layout(|f| f == field) {
                Ok(()) => known,
                Err(_) => known & !flag,
            },
        );
        // The exit program tells a process's last thread by `group_dead` where the record has
        // it (6.16 on), else by the thread group's live count, found in BTF.
        let group = kernel_btf
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|k| k.group.clone());
        let has_group_dead = host
            .check_layout(|f| f == &layout::EXIT_GROUP_DEAD)
            .map_err(|why| {
                let how = group.as_ref().err().cloned().unwrap_or_default();
                (why, how)
            });
        if let Err((why, how)) = &has_group_dead
            && group.is_err()
        {
            return Err(Unavailable(format!(
                "{why}, and the thread group's live count cannot be read instead: {how}"
            )));
        }
        let accounting = kernel_btf
            .as_ref()
            .map_or(Accounting::Unknown, |k| k.accounting);
        let group = group.ok();
        // Per-thread margins need the thread count, which only BTF locates.
        let thread_lag = group.map_or(0, |_| accounting.thread_lag());
        let capacity = u32::try_from(settings.max_processes).unwrap_or(u32::MAX);
        // Four slots per watchable process keep collisions (and so hash lookups for processes
        // that are not watched) rare.
        let slots = capacity
            .saturating_mul(4)
            .next_power_of_two()
            .clamp(4096, 1 << 22);
        // The exact reading needs the group's pointer where threads cache changes.
        let exact_read = kernel_btf
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|k| k.exact.clone())
            .and_then(|read| match (read, group) {
                (ExactRead::ThreadCaches { .. }, None) => {
                    Err("the thread group cannot be found in BTF".to_string())
                }
                _ => Ok(read),
            });
        let exact = ExactGlobals::of(exact_read.as_ref().ok(), host.possible_cpus);
        // Learned from every watched process's own changes, whichever way the program attaches.
        let rss_count_offsets = match (btf_read, exact_read.as_ref()) {
            (Some(RssRead::PercpuCounters(offsets)), _) => offsets,
            (_, Ok(read)) => read.counts(),
            _ => [0; member::COUNT],
        };
        let profiling = settings
            .rules
            .all()
            .iter()
            .any(|rule| rule.profile.is_some());
        // Swap-entry changes are followed only when a rule at start-up counts swap.
        let count_swap = settings.rules.all().iter().any(|rule| rule.count.swap());
        let log_level = if settings.debug_log {
            aya_log::Level::Debug
        } else {
            aya_log::Level::Warn
        } as u8;
        let rss_program = match (attach, btf_read) {
            (Attach::TpBtf, Some(RssRead::CountArgument)) => RssProgram::TpBtf {
                program: "rss_stat_btf_count",
                name: "rss_stat",
            },
            (Attach::TpBtf, _) => RssProgram::TpBtf {
                program: "rss_stat_btf",
                name: "rss_stat",
            },
            _ => RssProgram::Tracepoint {
                program: "rss_stat",
                category: "kmem",
                name: "rss_stat",
            },
        };
        Ok(Plan {
            attach,
            rss_program,
            globals: Globals {
                monitor_tgid: host.me,
                monitor_parent_tgid: host.parent,
                task_mm_offset: kernel_btf.as_ref().map_or(0, |k| k.task_mm),
                rss_count_offsets,
                page_size: host.page_size as i64,
                exit_has_group_dead: u32::from(has_group_dead.is_ok()),
                task_signal_offset: group.map_or(0, |g| g.task_signal),
                signal_live_offset: group.map_or(0, |g| g.live),
                signal_threads_offset: group.map_or(0, |g| g.nr_threads),
                thread_lag,
                slot_mask: slots - 1,
                sample_bytes: GROWTH_SAMPLE_BYTES,
                count_swap: u32::from(count_swap),
                oom_details,
                exact,
                log_level,
            },
            maps: MapSizes {
                ring_bytes: RING_BYTES,
                capacity,
                slots,
                growth: if profiling { GROWTH_STACKS } else { 1 },
                cpu_offsets: exact.cpus.max(1),
            },
            debug_log: settings.debug_log,
            profiling,
            kernel_signal: settings.kernel_signal,
            bpf_stats: settings.bpf_stats,
            accounting,
            exact_read,
            oom_kills,
        })
    }

    /// Edits the plan so that loading it makes `fault` happen (the tests' fault injection).
    pub(crate) fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::Verifier => {
                self.rss_program = RssProgram::Tracepoint {
                    program: "refused",
                    category: "kmem",
                    name: "rss_stat",
                }
            }
            Fault::Attach => {
                self.rss_program = RssProgram::Tracepoint {
                    program: "rss_stat",
                    category: "kmem",
                    name: "no_such_tracepoint",
                }
            }
            Fault::SmallRing => self.maps.ring_bytes = self.globals.page_size as u32,
            Fault::StatmInexact => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::{MatchMode, Matcher};
    use crate::rules::{Rule, Selector};
    use crate::units::SizeSpec;
    use memory_monitor_ebpf::Field;

    /// A host without BTF whose tracepoints are all as the programs expect.
    fn host() -> Host {
        Host {
            btf: Err("no BTF here".to_string()),
            layout: layout::ALL
                .into_iter()
                .chain([layout::EXIT_GROUP_DEAD, layout::VICTIM_PID])
                .chain(layout::VICTIM_DETAILS.map(|(field, _)| field))
                .map(|field| (field, Ok(())))
                .collect(),
            me: 100,
            parent: 1,
            page_size: 4096,
            possible_cpus: 4,
        }
    }

    fn rules() -> RuleSet {
        let matcher = Matcher::new(MatchMode::Exact, "my-app").unwrap();
        RuleSet::new(vec![Rule::new(
            "test",
            Selector::name(matcher),
            SizeSpec::Bytes(1 << 30),
        )])
        .unwrap()
    }

    fn settings(rules: &RuleSet, attach: Attach) -> Settings<'_> {
        Settings {
            rules,
            max_processes: 16384,
            kernel_signal: false,
            bpf_stats: false,
            attach,
            debug_log: false,
        }
    }

    #[test]
    fn without_btf_auto_attaches_a_classic_tracepoint_and_tp_btf_is_refused() {
        let rules = rules();
        let plan = Plan::new(&host(), &settings(&rules, Attach::Auto)).unwrap();
        assert_eq!(plan.attach, Attach::Tracepoint);
        assert_eq!(
            plan.rss_program,
            RssProgram::Tracepoint {
                program: "rss_stat",
                category: "kmem",
                name: "rss_stat"
            }
        );
        assert_eq!(plan.accounting, Accounting::Unknown);
        assert_eq!(plan.globals.task_mm_offset, 0);
        assert_eq!(plan.globals.thread_lag, 0);
        assert!(plan.exact_read.is_err());
        let refused = Plan::new(&host(), &settings(&rules, Attach::TpBtf)).unwrap_err();
        assert_eq!(refused, Unavailable("no BTF here".to_string()));
    }

    #[test]
    fn the_maps_are_sized_from_the_capacity_and_the_rules() {
        let rules = rules();
        let plan = Plan::new(&host(), &settings(&rules, Attach::Auto)).unwrap();
        assert_eq!(
            plan.maps,
            MapSizes {
                ring_bytes: RING_BYTES,
                capacity: 16384,
                slots: 65536,
                growth: 1,
                cpu_offsets: 4,
            }
        );
        assert_eq!(plan.globals.slot_mask, 65535);
        assert_eq!(
            (plan.globals.monitor_tgid, plan.globals.page_size),
            (100, 4096)
        );
        // A few processes still get the smallest pre-filter; no more than 4 Mi slots.
        let few = Settings {
            max_processes: 10,
            ..settings(&rules, Attach::Auto)
        };
        assert_eq!(Plan::new(&host(), &few).unwrap().maps.slots, 4096);
        let many = Settings {
            max_processes: 1 << 21,
            ..settings(&rules, Attach::Auto)
        };
        assert_eq!(Plan::new(&host(), &many).unwrap().maps.slots, 1 << 22);
        // A rule that profiles gets the growth profile's maps.
        let matcher = Matcher::new(MatchMode::Exact, "my-app").unwrap();
        let mut rule = Rule::new("test", Selector::name(matcher), SizeSpec::Bytes(1 << 30));
        rule.profile = Some(crate::rules::ProfileSettings {
            sink: crate::sink::SinkSpec::Dir("/tmp/profiles".into()),
            budget: crate::rules::DEFAULT_PROFILE_BUDGET,
            growth_at_percent: 80,
        });
        let profiling = RuleSet::new(vec![rule]).unwrap();
        let plan = Plan::new(&host(), &settings(&profiling, Attach::Auto)).unwrap();
        assert!(plan.profiling);
        assert_eq!(plan.maps.growth, GROWTH_STACKS);
    }

    #[test]
    fn a_tracepoint_field_out_of_place_refuses_the_plan() {
        let rules = rules();
        let mut moved = host();
        moved.layout[0].1 = Err("the kernel's kmem:rss_stat field 'mm_id' moved".to_string());
        let refused = Plan::new(&moved, &settings(&rules, Attach::Tracepoint)).unwrap_err();
        assert!(refused.0.contains("mm_id"), "{refused}");
        // Without group_dead, and without BTF to find the group's live count instead.
        let mut old = host();
        set_layout(&mut old, layout::EXIT_GROUP_DEAD, "no group_dead");
        let refused = Plan::new(&old, &settings(&rules, Attach::Auto)).unwrap_err();
        assert_eq!(
            refused.0,
            "no group_dead, and the thread group's live count cannot be read instead: no BTF here"
        );
    }

    /// Marks `field` as not where the programs expect it on `host`, for `why`.
    fn set_layout(host: &mut Host, field: Field, why: &str) {
        for (found, result) in &mut host.layout {
            if *found == field {
                *result = Err(why.to_string());
            }
        }
    }

    #[test]
    fn oom_kills_are_followed_with_the_details_the_kernel_has() {
        let rules = rules();
        let settings = settings(&rules, Attach::Tracepoint);
        let plan = Plan::new(&host(), &settings).unwrap();
        assert_eq!(plan.oom_kills, Ok(()));
        assert_eq!(
            plan.globals.oom_details,
            oom::KNOWS_RSS | oom::KNOWS_UID | oom::KNOWS_COMM
        );
        // 5.10 and 6.1: the victim's PID alone; one RSS field missing takes them all out.
        let mut old = host();
        for (field, _) in layout::VICTIM_DETAILS {
            set_layout(&mut old, field, "no such field");
        }
        let plan = Plan::new(&old, &settings).unwrap();
        assert_eq!((plan.oom_kills, plan.globals.oom_details), (Ok(()), 0));
        let mut partial = host();
        set_layout(&mut partial, layout::VICTIM_SHMEM, "no shmem_rss");
        let plan = Plan::new(&partial, &settings).unwrap();
        assert_eq!(plan.globals.oom_details, oom::KNOWS_UID | oom::KNOWS_COMM);
        // Without the tracepoint, eBPF mode runs without them.
        let mut none = host();
        set_layout(&mut none, layout::VICTIM_PID, "no oom:mark_victim");
        let plan = Plan::new(&none, &settings).unwrap();
        assert_eq!(plan.oom_kills, Err("no oom:mark_victim".to_string()));
    }

    #[test]
    fn an_injected_fault_is_an_edit_of_the_plan() {
        let rules = rules();
        let plan = Plan::new(&host(), &settings(&rules, Attach::Auto)).unwrap();
        let injected = |fault| {
            let mut plan = plan.clone();
            plan.inject(fault);
            plan
        };
        assert_eq!(
            injected(Fault::Verifier).rss_program,
            RssProgram::Tracepoint {
                program: "refused",
                category: "kmem",
                name: "rss_stat"
            }
        );
        assert_eq!(
            injected(Fault::Attach).rss_program,
            RssProgram::Tracepoint {
                program: "rss_stat",
                category: "kmem",
                name: "no_such_tracepoint"
            }
        );
        let small = injected(Fault::SmallRing);
        assert_eq!(small.maps.ring_bytes, 4096);
        assert_eq!(small.rss_program, plan.rss_program);
        assert_eq!(injected(Fault::StatmInexact).maps, plan.maps);
    }
}
