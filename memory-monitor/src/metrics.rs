//! Prometheus metrics (`--metrics-addr`): what the monitor watches and does, per rule, served
//! on `/metrics` by a thread of its own, as OpenMetrics text to Prometheus and in the older
//! Prometheus text format to everything else.
//!
//! Every series the monitor's loop updates is created when the rules are loaded and kept as a
//! handle, so counting an event is one atomic add: no lookup, no lock, no allocation. Only a
//! scrape allocates (the text it sends), on the server's thread.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::action::Delivery;
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
struct ModeLabels {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    result: &'static str,
}

/// The results a signal is counted under.
const SIGNAL_RESULTS: [&str; 5] = ["sent", "sent_by_kernel", "dry_run", "exited", "failed"];

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
pub struct Metrics {
    registry: Registry,
    watched: Family<RuleLabels, Gauge>,
    limit: Family<RuleLabels, Gauge>,
    breaches: Family<RuleLabels, Counter>,
    signals: Family<SignalLabels, Counter>,
    profiles: Family<ResultLabels, Counter>,
    mode: Family<ModeLabels, Gauge>,
    reloads: Family<OutcomeLabels, Counter>,
    /// Kernel events handled (eBPF mode).
    pub events: Counter,
    /// Kernel events lost (the ring buffer was full).
    pub lost_events: Counter,
    /// How long each poll cycle took, in seconds.
    pub poll_cycle: Histogram,
    /// Matching processes skipped (the watch table is full, or out of descriptors).
    pub skipped: Counter,
}

/// One rule's series, as handles.
#[derive(Debug, Clone)]
pub struct RuleMetrics {
    /// The rule's name (to tell, on a reload, which rules went away).
    name: String,
    /// Processes watched under the rule now.
    pub watched: Gauge,
    /// Breaches (crossings of the limit).
    pub breaches: Counter,
    /// Profiles written.
    pub profiles_written: Counter,
    /// Profiles lost.
    pub profiles_failed: Counter,
    /// Signals by (signal, result).
    signals: Vec<(Signal, &'static str, Counter)>,
}

impl RuleMetrics {
    /// Counts a signal and what became of it.
    pub fn signalled(&self, signal: Signal, delivery: Delivery) {
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
    /// All metrics, registered, at zero.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("memory_monitor");
        let metrics = Metrics {
            watched: Family::default(),
            limit: Family::default(),
            breaches: Family::default(),
            signals: Family::default(),
            profiles: Family::default(),
            mode: Family::default(),
            reloads: Family::default(),
            events: Counter::default(),
            lost_events: Counter::default(),
            poll_cycle: Histogram::new([0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0]),
            skipped: Counter::default(),
            registry: Registry::default(),
        };
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
            "Matching processes that could not be watched (table full, out of file descriptors)",
            metrics.skipped.clone(),
        );
        Arc::new(Metrics {
            registry,
            ..metrics
        })
    }

    /// Says which mode is in use.
    pub fn set_mode(&self, event_driven: bool) {
        let (on, off) = match event_driven {
            true => ("ebpf", "poll"),
            false => ("poll", "ebpf"),
        };
        self.mode.get_or_create(&ModeLabels { mode: on }).set(1);
        self.mode.get_or_create(&ModeLabels { mode: off }).set(0);
    }

    /// Counts a reload of the rules.
    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&OutcomeLabels { result }).inc();
    }

    /// The series of every rule in `rules` (created at zero if new), in the same order. Rules
    /// being loaded are not in force yet: [`Metrics::put_in_force`] or [`Metrics::retire`]
    /// follows, once the load has succeeded or failed.
    pub fn for_rules(&self, rules: &RuleSet) -> Vec<RuleMetrics> {
        rules
            .rules()
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
                let profiles_written = self.profiles.get_or_create(&result("written")).clone();
                let profiles_failed = self.profiles.get_or_create(&result("failed")).clone();
                RuleMetrics {
                    name: rule.name.clone(),
                    watched,
                    breaches,
                    profiles_written,
                    profiles_failed,
                    signals,
                }
            })
            .collect()
    }

    /// `rules` are in force now, in place of the rules `replaced` had the series of: the
    /// series of rules that are gone are dropped, and each rule's fixed limit is exported.
    pub fn put_in_force(&self, rules: &RuleSet, replaced: &[RuleMetrics]) {
        self.retire(replaced, rules);
        for (index, rule) in rules.rules().iter().enumerate() {
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
    pub fn retire(&self, series: &[RuleMetrics], kept: &RuleSet) {
        let kept: Vec<&str> = kept.rules().iter().map(|r| r.name.as_str()).collect();
        for gone in series.iter().filter(|s| !kept.contains(&s.name.as_str())) {
            let labels = RuleLabels {
                rule: gone.name.clone(),
            };
            self.watched.remove(&labels);
            self.limit.remove(&labels);
            self.breaches.remove(&labels);
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
    pub fn encode(&self, classic: bool) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
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

/// Serves `metrics` on `address` from a thread of its own. Binding happens here, so a busy
/// port is an error at start-up, not a silent absence.
pub fn serve(address: SocketAddr, metrics: Arc<Metrics>) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(address)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("mm-metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(error) = answer(stream, &metrics) {
                    tracing::debug!("metrics request failed: {error}");
                }
            }
        })?;
    Ok(bound)
}

/// How long a scraper may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers one HTTP/1.x request: `GET /metrics` (or `/`) with the text, anything else 404.
fn answer(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut request = [0u8; 8192];
    let mut len = 0;
    while !request[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < request.len() {
        let read = stream.read(&mut request[len..])?;
        if read == 0 {
            break;
        }
        len += read;
    }
    let request = &request[..len];
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    // Prometheus asks for OpenMetrics in its Accept header; anything else gets the older format.
    let open_metrics = request
        .windows(b"application/openmetrics-text".len())
        .any(|w| w.eq_ignore_ascii_case(b"application/openmetrics-text"));
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = path.split(|&b| b == b'?').next().unwrap_or_default();
    let (status, body) = match (method, path) {
        (b"GET" | b"HEAD", b"/metrics" | b"/") => ("200 OK", metrics.encode(!open_metrics)),
        (b"GET" | b"HEAD", _) => ("404 Not Found", "not found: try /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "only GET\n".to_string()),
    };
    let content_type = match open_metrics {
        true => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        false => "text/plain; version=0.0.4; charset=utf-8",
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if method != b"HEAD" {
        stream.write_all(body.as_bytes())?;
    }
    Ok(())
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

    #[test]
    fn a_failed_load_leaves_the_series_in_force_and_a_good_one_replaces_them() {
        let metrics = Metrics::new();
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
