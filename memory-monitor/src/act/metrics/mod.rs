//! Prometheus metrics (`--metrics-addr`): what the monitor watches and does, per rule, served
//! on `/metrics` by a thread of its own, as OpenMetrics text to Prometheus and in the older
//! Prometheus text format to everything else.
//!
//! Every series the monitor's loop updates is created when the rules are loaded and kept as a
//! handle, so counting an event is one atomic add: no lookup, no lock, no allocation. Only a
//! scrape allocates (the text it sends, the server that answers it), away from the loop. The
//! server is [`server`]'s.

mod process;
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub(crate) use server::{MAX_CONNECTIONS, serve};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::act::deliver::Delivery;
use crate::kernel::ProgramStats;
use crate::rules::RuleSet;
use crate::signal::Signal;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalLabels {
    rule: String,
    signal: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    rule: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    rule: String,
    trigger: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    result: &'static str,
}

/// The `rule` label of the kernel's OOM kills of processes no rule watched: in parentheses,
/// as no rule is named (a rule named so would share its series).
pub(crate) const UNWATCHED: &str = "(unwatched)";

/// The `trigger` labels of the pressure episodes: PSI, and `memory.high`.
const PRESSURE: &str = "pressure";
const HIGH: &str = "high";

/// The results a signal is counted under.
const SIGNAL_RESULTS: [&str; 5] = ["sent", "sent_by_kernel", "dry_run", "exited", "failed"];

/// The results a reload of the rules is counted under: succeeded, failed.
const RELOAD_RESULTS: [&str; 2] = ["ok", "failed"];

fn signal_labels(rule: &str, signal: Signal, result: &'static str) -> SignalLabels {
    SignalLabels {
        rule: rule.to_string(),
        signal: signal.to_string(),
        result,
    }
}

fn signal_result(delivery: Delivery) -> &'static str {
    match delivery {
        Delivery::Sent => "sent",
        Delivery::SentByKernel => "sent_by_kernel",
        Delivery::DryRun => "dry_run",
        Delivery::Exited => "exited",
        Delivery::Failed(_) => "failed",
    }
}

/// Every metric the monitor exports.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// The standard `process_*` metrics, under their own names (no `memory_monitor_` prefix).
    own_cost: Registry,
    watched: Family<RuleLabels, Gauge>,
    limit: Family<RuleLabels, Gauge>,
    breaches: Family<RuleLabels, Counter>,
    oom_kills: Family<RuleLabels, Counter>,
    warnings: Family<RuleLabels, Counter>,
    group_breaches: Family<RuleLabels, Counter>,
    leaks: Family<RuleLabels, Counter>,
    leak_time_to_limit: Family<RuleLabels, SecondsGauge>,
    pressure_episodes: Family<TriggerLabels, Counter>,
    signals: Family<SignalLabels, Counter>,
    profiles: Family<ResultLabels, Counter>,
    mode: Family<ModeLabels, Gauge>,
    reloads: Family<OutcomeLabels, Counter>,
    /// The kernel's OOM kills of processes no rule watched.
    pub(crate) unwatched_oom_kills: Counter,
    /// Kernel events handled (eBPF mode).
    pub(crate) events: Counter,
    /// Kernel events lost (the ring buffer was full).
    pub(crate) lost_events: Counter,
    /// How long each poll cycle took, in seconds.
    pub(crate) poll_cycle: Histogram,
    /// Matching processes not watched at the last look at every process (the watch table was
    /// full, or out of descriptors): a level, since the same ones are met again on every look.
    pub(crate) skipped: Gauge,
    /// Whether the monitor's loop answers (`/healthz`).
    pub(crate) liveness: Liveness,
}

/// A liveness check that asks the monitor's own loop (`GET /healthz`): a server thread that
/// answers while the loop is stuck would keep a monitor that protects nothing alive. The loop
/// is woken by the question, so an idle monitor still never wakes up by itself.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    asked: tokio::sync::Notify,
    answered: AtomicU64,
}

impl Liveness {
    /// Until the loop is asked (its `select!` waits on this).
    pub(crate) async fn asked(&self) {
        self.asked.notified().await;
    }

    /// The loop's answer.
    pub(crate) fn answer(&self) {
        self.answered.fetch_add(1, Ordering::Release);
    }

    /// Asks the loop and waits at most `patience` for its answer.
    async fn check(&self, patience: Duration) -> bool {
        let before = self.answered.load(Ordering::Acquire);
        self.asked.notify_one();
        let answered = async {
            while self.answered.load(Ordering::Acquire) == before {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(patience, answered).await.is_ok()
    }
}

/// How long `/healthz` waits for the loop to answer.
const LIVENESS_PATIENCE: Duration = Duration::from_secs(2);

/// A gauge of seconds, which may be `+Inf`.
pub(crate) type SecondsGauge = Gauge<f64, AtomicU64>;

/// One rule's series, as handles.
#[derive(Debug, Clone)]
pub(crate) struct RuleMetrics {
    /// The rule's name (to tell, on a reload, which rules went away).
    name: String,
    /// Processes watched under the rule now.
    pub(crate) watched: Gauge,
    /// Breaches (crossings of the limit).
    pub(crate) breaches: Counter,
    /// Processes watched under the rule that the kernel's OOM killer took.
    pub(crate) oom_kills: Counter,
    /// Warnings (crossings of the warning level).
    pub(crate) warnings: Counter,
    /// Members signalled because their group went over its budget (`group-limit`).
    pub(crate) group_breaches: Counter,
    /// Processes named as leaking (`leak_suspected`).
    pub(crate) leaks: Counter,
    /// The nearest projected time to the limit of its processes, when it follows leak trends.
    pub(crate) leak_time_to_limit: Option<SecondsGauge>,
    /// Episodes of memory pressure (`on-pressure`), when the rule has the trigger.
    pub(crate) pressure_episodes: Option<Counter>,
    /// Episodes of its cgroup throttled at `memory.high` (`on-high`), when it has the trigger.
    pub(crate) high_episodes: Option<Counter>,
    /// Profiles written.
    pub(crate) profiles_written: Counter,
    /// Profiles lost.
    pub(crate) profiles_failed: Counter,
    /// Signals by (signal, result).
    signals: Vec<(Signal, &'static str, Counter)>,
}

impl RuleMetrics {
    /// Counts a signal and what became of it.
    pub(crate) fn signalled(&self, signal: Signal, delivery: Delivery) {
        let result = signal_result(delivery);
        if let Some((_, _, counter)) = self
            .signals
            .iter()
            .find(|(s, r, _)| *s == signal && *r == result)
        {
            counter.inc();
        }
    }
}

impl Metrics {
    /// All metrics, registered, at zero; with the RSS program's runs when the kernel counts
    /// them (`program`).
    pub(crate) fn new(program: Option<ProgramStats>) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("memory_monitor");
        let metrics = Metrics {
            watched: Family::default(),
            limit: Family::default(),
            breaches: Family::default(),
            oom_kills: Family::default(),
            unwatched_oom_kills: Counter::default(),
            warnings: Family::default(),
            group_breaches: Family::default(),
            leaks: Family::default(),
            leak_time_to_limit: Family::default(),
            pressure_episodes: Family::default(),
            signals: Family::default(),
            profiles: Family::default(),
            mode: Family::default(),
            reloads: Family::default(),
            events: Counter::default(),
            lost_events: Counter::default(),
            poll_cycle: Histogram::new([0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0]),
            skipped: Gauge::default(),
            liveness: Liveness::default(),
            registry: Registry::default(),
            own_cost: Registry::default(),
        };
        let mut own_cost = Registry::default();
        own_cost.register_collector(Box::new(process::OwnCost));
        if let Some(program) = program {
            registry.register_collector(Box::new(process::ProgramRuns(program)));
        }
        registry.register(
            "watched_processes",
            "Processes watched now, by rule",
            metrics.watched.clone(),
        );
        registry.register(
            "limit_bytes",
            "The rule's memory limit in bytes (rules whose limit is the same for every process)",
            metrics.limit.clone(),
        );
        registry.register(
            "breaches",
            "Processes that went over their limit, by rule",
            metrics.breaches.clone(),
        );
        registry.register(
            "oom_kills",
            "Processes the kernel's OOM killer took, by the rule that watched them ((unwatched): none did)",
            metrics.oom_kills.clone(),
        );
        registry.register(
            "warnings",
            "Processes that went over their rule's warning level (warn-at), by rule",
            metrics.warnings.clone(),
        );
        registry.register(
            "group_breaches",
            "Members signalled because the processes a rule watches went over its group-limit together, by rule",
            metrics.group_breaches.clone(),
        );
        registry.register(
            "leaks_suspected",
            "Processes named as leaking (leak-horizon): their trend reached the limit within the horizon, by rule",
            metrics.leaks.clone(),
        );
        registry.register(
            "leak_time_to_limit_seconds",
            "The nearest projected time to the limit among a rule's processes named or still projected within its leak-horizon (+Inf: none), as of each one's last waypoint",
            metrics.leak_time_to_limit.clone(),
        );
        registry.register(
            "pressure_episodes",
            "Episodes of memory pressure (trigger=pressure) or of the rule's cgroup throttled at memory.high (trigger=high), by rule",
            metrics.pressure_episodes.clone(),
        );
        registry.register(
            "signals",
            "Signals due, by rule, signal and result (sent, sent_by_kernel, dry_run, exited, failed)",
            metrics.signals.clone(),
        );
        registry.register(
            "profile_writes",
            "Breach profiles, by rule and result (written, failed)",
            metrics.profiles.clone(),
        );
        registry.register(
            "mode",
            "How RSS changes are learned: 1 for the mode in use (ebpf or poll)",
            metrics.mode.clone(),
        );
        registry.register(
            "config_reloads",
            "Rule reloads (SIGHUP), by result (ok, failed)",
            metrics.reloads.clone(),
        );
        registry.register(
            "kernel_events",
            "Kernel events handled (eBPF mode)",
            metrics.events.clone(),
        );
        registry.register(
            "lost_kernel_events",
            "Kernel events lost because the ring buffer was full (eBPF mode)",
            metrics.lost_events.clone(),
        );
        registry.register(
            "poll_cycle_seconds",
            "Time taken by one look at every process (poll mode, and eBPF mode's resynchronisations)",
            metrics.poll_cycle.clone(),
        );
        registry.register(
            "skipped_processes",
            "Matching processes not watched at the last look at every process (table full, out of file descriptors)",
            metrics.skipped.clone(),
        );
        // At zero from the start, so that an alert on increase() fires on the first failure.
        for result in RELOAD_RESULTS {
            drop(metrics.reloads.get_or_create(&OutcomeLabels { result }));
        }
        let unwatched = RuleLabels {
            rule: UNWATCHED.to_string(),
        };
        let unwatched_oom_kills = metrics.oom_kills.get_or_create(&unwatched).clone();
        Arc::new(Metrics {
            registry,
            own_cost,
            unwatched_oom_kills,
            ..metrics
        })
    }

    /// Says which mode is in use.
    pub(crate) fn set_mode(&self, event_driven: bool) {
        let (on, off) = match event_driven {
            true => ("ebpf", "poll"),
            false => ("poll", "ebpf"),
        };
        self.mode.get_or_create(&ModeLabels { mode: on }).set(1);
        self.mode.get_or_create(&ModeLabels { mode: off }).set(0);
    }

    /// Counts a reload of the rules.
    pub(crate) fn reloaded(&self, ok: bool) {
        let [succeeded, failed] = RELOAD_RESULTS;
        let result = if ok { succeeded } else { failed };
        self.reloads.get_or_create(&OutcomeLabels { result }).inc();
    }

    /// The series of every rule in `rules` (created at zero if new), in the same order. Rules
    /// being loaded are not in force yet: [`Metrics::put_in_force`] or [`Metrics::retire`]
    /// follows, once the load has succeeded or failed.
    pub(crate) fn for_rules(&self, rules: &RuleSet) -> Vec<RuleMetrics> {
        rules
            .all()
            .iter()
            .map(|rule| {
                let labels = RuleLabels {
                    rule: rule.name.clone(),
                };
                let result = |result| ResultLabels {
                    rule: rule.name.clone(),
                    result,
                };
                let mut signals = Vec::new();
                for signal in [rule.signal, Signal::KILL] {
                    for result in SIGNAL_RESULTS {
                        let labels = signal_labels(&rule.name, signal, result);
                        let counter = self.signals.get_or_create(&labels).clone();
                        signals.push((signal, result, counter));
                    }
                }
                // One series at a time: a family's lock is held while its guard lives.
                let watched = self.watched.get_or_create(&labels).clone();
                let breaches = self.breaches.get_or_create(&labels).clone();
                let oom_kills = self.oom_kills.get_or_create(&labels).clone();
                let warnings = self.warnings.get_or_create(&labels).clone();
                let group_breaches = self.group_breaches.get_or_create(&labels).clone();
                let leaks = self.leaks.get_or_create(&labels).clone();
                let leak_time_to_limit = rule.leak.map(|_| {
                    let gauge = self.leak_time_to_limit.get_or_create(&labels).clone();
                    gauge.set(f64::INFINITY);
                    gauge
                });
                if rule.leak.is_none() {
                    self.leak_time_to_limit.remove(&labels);
                }
                let episodes = |trigger| TriggerLabels {
                    rule: rule.name.clone(),
                    trigger,
                };
                let pressure_episodes = rule.on_pressure.map(|_| {
                    self.pressure_episodes
                        .get_or_create(&episodes(PRESSURE))
                        .clone()
                });
                let high_episodes = rule.on_high.then(|| {
                    self.pressure_episodes
                        .get_or_create(&episodes(HIGH))
                        .clone()
                });
                let profiles_written = self.profiles.get_or_create(&result("written")).clone();
                let profiles_failed = self.profiles.get_or_create(&result("failed")).clone();
                RuleMetrics {
                    name: rule.name.clone(),
                    watched,
                    breaches,
                    oom_kills,
                    warnings,
                    group_breaches,
                    leaks,
                    leak_time_to_limit,
                    pressure_episodes,
                    high_episodes,
                    profiles_written,
                    profiles_failed,
                    signals,
                }
            })
            .collect()
    }

    /// `rules` are in force now, in place of the rules `replaced` had the series of: the
    /// series of rules that are gone are dropped, and each rule's fixed limit is exported.
    pub(crate) fn put_in_force<'a>(
        &self,
        rules: &RuleSet,
        replaced: impl IntoIterator<Item = &'a RuleMetrics>,
    ) {
        self.retire(replaced, rules);
        for (index, rule) in rules.all().iter().enumerate() {
            let labels = RuleLabels {
                rule: rule.name.clone(),
            };
            match rules.fixed_limit(index) {
                Some(limit) => {
                    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                    self.limit.get_or_create(&labels).set(limit);
                }
                None => {
                    self.limit.remove(&labels);
                }
            }
        }
    }

    /// Drops every series of the rules in `series` that `kept` has no rule of the same name
    /// for: the rules a reload removed, or those of a reload that failed.
    pub(crate) fn retire<'a>(
        &self,
        series: impl IntoIterator<Item = &'a RuleMetrics>,
        kept: &RuleSet,
    ) {
        let kept: Vec<&str> = kept.all().iter().map(|r| r.name.as_str()).collect();
        for gone in series
            .into_iter()
            .filter(|s| !kept.contains(&s.name.as_str()))
        {
            let labels = RuleLabels {
                rule: gone.name.clone(),
            };
            self.watched.remove(&labels);
            self.limit.remove(&labels);
            self.breaches.remove(&labels);
            self.oom_kills.remove(&labels);
            self.warnings.remove(&labels);
            self.group_breaches.remove(&labels);
            self.leaks.remove(&labels);
            self.leak_time_to_limit.remove(&labels);
            for trigger in [PRESSURE, HIGH] {
                self.pressure_episodes.remove(&TriggerLabels {
                    rule: gone.name.clone(),
                    trigger,
                });
            }
            for result in ["written", "failed"] {
                self.profiles.remove(&ResultLabels {
                    rule: gone.name.clone(),
                    result,
                });
            }
            for (signal, result, _) in &gone.signals {
                self.signals
                    .remove(&signal_labels(&gone.name, *signal, result));
            }
        }
    }

    /// The exposition in OpenMetrics text (what Prometheus asks for), or with `classic` in
    /// Prometheus's older text format (what other scrapers and `promtool` read).
    pub(crate) fn encode(&self, classic: bool) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut text = String::new();
        encode_registry(&mut text, &self.registry)
            .and_then(|()| encode_registry(&mut text, &self.own_cost))
            .and_then(|()| encode_eof(&mut text))
            .expect("writing to a String cannot fail");
        match classic {
            true => classic_text(&text),
            false => text,
        }
    }
}

/// OpenMetrics text as Prometheus's older text format: there a counter's family is named like
/// its samples (`x_total`), and nothing marks the end.
fn classic_text(open_metrics: &str) -> String {
    let counters: Vec<&str> = open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(open_metrics.len() + 16 * counters.len());
    for line in open_metrics.lines().filter(|line| *line != "# EOF") {
        let family = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let name = rest.split(' ').next()?;
            counters
                .contains(&name)
                .then(|| (tag, name, &rest[name.len()..]))
        });
        match family {
            Some((tag, name, rest)) => text += &format!("{tag}{name}_total{rest}"),
            None => text += line,
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::{MatchMode, Matcher};
    use crate::rules::{Rule, Selector};
    use crate::units::SizeSpec;

    fn rules(name: &str, limit: u64) -> RuleSet {
        let matcher = Matcher::new(MatchMode::Prefix, "app").unwrap();
        let rule = Rule::new(name, Selector::name(matcher), SizeSpec::Bytes(limit));
        RuleSet::new(vec![rule]).unwrap()
    }

    /// Checks `liveness` from a runtime of its own, as the server does.
    fn check(liveness: &Liveness, patience: Duration) -> bool {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(liveness.check(patience))
    }

    #[test]
    fn liveness_is_the_loop_answering() {
        let liveness = Arc::new(Liveness::default());
        assert!(
            !check(&liveness, Duration::from_millis(50)),
            "nobody answers"
        );
        let answering = Arc::clone(&liveness);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async {
                loop {
                    answering.asked().await;
                    answering.answer();
                }
            });
        });
        assert!(
            check(&liveness, Duration::from_secs(20)),
            "the loop answers"
        );
        assert!(check(&liveness, Duration::from_secs(20)), "and again");
    }

    #[test]
    fn a_failed_load_leaves_the_series_in_force_and_a_good_one_replaces_them() {
        let metrics = Metrics::new(None);
        let old = rules("old", 1000);
        let in_force = metrics.for_rules(&old);
        metrics.put_in_force(&old, &[]);
        in_force[0].breaches.inc();

        // Loaded, then refused: nothing of it shows, nothing in force changed.
        let refused = rules("new", 2000);
        let prepared = metrics.for_rules(&refused);
        metrics.retire(&prepared, &old);
        let text = metrics.encode(true);
        assert!(!text.contains("rule=\"new\""), "{text}");
        assert!(
            text.contains("memory_monitor_limit_bytes{rule=\"old\"} 1000"),
            "{text}"
        );
        assert!(
            text.contains("memory_monitor_breaches_total{rule=\"old\"} 1"),
            "{text}"
        );

        // Loaded and put in force: the old rule's series go.
        let prepared = metrics.for_rules(&refused);
        metrics.put_in_force(&refused, &in_force);
        let text = metrics.encode(true);
        assert!(!text.contains("rule=\"old\""), "{text}");
        assert!(
            text.contains("memory_monitor_limit_bytes{rule=\"new\"} 2000"),
            "{text}"
        );
        assert_eq!(prepared.len(), 1);
    }

    #[test]
    fn the_classic_format_names_counter_families_like_their_samples() {
        let open = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total{x=\"1\"} 2\n\
                    # HELP g Level.\n# TYPE g gauge\ng 3\n# EOF\n";
        assert_eq!(
            classic_text(open),
            "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total{x=\"1\"} 2\n\
             # HELP g Level.\n# TYPE g gauge\ng 3\n"
        );
    }
}
