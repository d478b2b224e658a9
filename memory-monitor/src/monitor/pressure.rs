//! Rules that act on memory pressure (`on-pressure`) or on their cgroup throttled at its
//! `memory.high` (`on-high`): two ways a machine gets into trouble with no process over its
//! limit. Both are heard from the kernel as they happen, never polled:
//!
//! - a PSI trigger ([`crate::system::psi`]) per rule, on the host's pressure or its cgroup's,
//!   which the kernel marks `POLLPRI` when it fires (at most once a window);
//! - the `high` count of the rule's cgroup's `memory.events`, which the kernel notifies
//!   inotify of whenever it changes, read when it does.
//!
//! Each trigger's descriptor, and the inotify instance, is registered with the runtime (a PSI
//! trigger for `EPOLLPRI`, which tokio reports as readable), and the loops wait on them all as
//! one future ([`fired`]). (Not through an epoll set of their own: an epoll set nested in
//! another polls its members to say whether it is ready, and polling a PSI trigger consumes
//! its event, so the inner set would then have nothing to tell.) A trigger that fires starts an
//! [`Episode`], said once (a line, a count, the hook) however often it fires while it lasts;
//! it ends once the trigger has been quiet for [`EPISODE_QUIET`] (or two windows, if longer).
//! With `pressure-action = "signal-largest"` (or `"signal-fastest"`) the process the rule
//! watches there that [`super::pick`] prefers is signalled at the episode's start, and again no
//! sooner than the rule's `repeat` while it lasts. The records are made when the rules are put
//! in force, and the readings the fastest's growth goes by are kept in the processes' records:
//! a firing allocates nothing (a hook, when the rule has one, is the exception, as on a
//! breach).

use std::ffi::CString;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::Monitor;
use super::episode::{EPISODE_QUIET, Episode};
use super::waits::register;
use crate::act::deliver::Delivery;
use crate::act::hook::{Breach, HookEvent};
use crate::choice::Choice as _;
use crate::rules::{ActOn, MAX_RULES, Pick, PressureTrigger, RuleSet};
use crate::system::cgroup::CgroupPath;
use crate::system::event_count::{EventCount, HIGH};
use crate::system::psi::{self, Scope};
use crate::system::users::UserName;
use crate::units::Bytes;

/// The triggers of the rules in force.
#[derive(Debug)]
pub(crate) struct Pressure {
    /// Told of changes of the followed `memory.events` files.
    notify: Option<Fd>,
    /// At most two a rule.
    triggers: Vec<Trigger>,
    /// Whether the descriptors are registered with the runtime (from the loop's start on).
    registered: bool,
    /// What could not be armed when the rules were last put in force, to be said once.
    refused: Vec<(usize, &'static str, String)>,
}

/// A descriptor, registered with the runtime once the loop runs (start-up may run outside
/// one, and must make the triggers while it is still privileged).
#[derive(Debug)]
enum Fd {
    Open(OwnedFd),
    Waited(AsyncFd<OwnedFd>),
}

impl Fd {
    /// Registered with the runtime, for `interest`.
    fn register(self, interest: Interest) -> std::io::Result<Fd> {
        match self {
            Fd::Open(fd) => register(fd, interest).map(Fd::Waited),
            waited => Ok(waited),
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Fd::Open(fd) => fd.as_fd(),
            Fd::Waited(fd) => fd.get_ref().as_fd(),
        }
    }

    /// Whether it is ready, clearing what it was ready for; a waker left otherwise.
    fn poll_ready(&self, cx: &mut Context<'_>) -> bool {
        let Fd::Waited(fd) = self else {
            return false;
        };
        match fd.poll_read_ready(cx) {
            Poll::Ready(Ok(mut guard)) => {
                guard.clear_ready();
                true
            }
            // Said as a firing: its handling finds what is wrong.
            Poll::Ready(Err(_)) => true,
            Poll::Pending => false,
        }
    }
}

/// A PSI trigger's interest: `EPOLLPRI`, which tokio takes for readable too.
fn psi_interest() -> Interest {
    Interest::READABLE.add(Interest::PRIORITY)
}

/// What [`fired`] found ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fired {
    /// The inotify instance: a followed `memory.events` changed.
    Notices,
    /// The PSI trigger at this index.
    Trigger(usize),
}

/// Until one of `pressure`'s descriptors is ready (never, without triggers). Allocates
/// nothing.
pub(crate) async fn fired(pressure: Option<&Pressure>) -> Fired {
    match pressure {
        Some(pressure) => std::future::poll_fn(|cx| pressure.poll_fired(cx)).await,
        None => std::future::pending().await,
    }
}

/// One rule's trigger.
#[derive(Debug)]
struct Trigger {
    /// The rule's index among those in force.
    rule: usize,
    source: Source,
    episode: Episode,
}

/// What fires a trigger.
#[derive(Debug)]
enum Source {
    /// A PSI trigger; `None` once its cgroup was removed.
    Psi {
        scope: Scope,
        trigger: PressureTrigger,
        fd: Option<Fd>,
    },
    /// The `high` count of a cgroup's `memory.events`; its inotify watch (`None` once the
    /// cgroup was removed).
    High {
        cgroup: CgroupPath,
        count: EventCount,
        watch: Option<i32>,
    },
}

impl Trigger {
    /// How long without a firing ends its episode.
    fn quiet(&self) -> Duration {
        match &self.source {
            Source::Psi { trigger, .. } => EPISODE_QUIET.max(2 * trigger.window),
            Source::High { .. } => EPISODE_QUIET,
        }
    }

    /// Whether it is the same trigger as `source` would make: a rule's trigger that a reload
    /// left as it was carries on (its descriptor, made while the monitor was privileged, and
    /// its episode).
    fn is(&self, scope: &Scope, wanted: PressureTrigger) -> bool {
        matches!(&self.source, Source::Psi { scope: s, trigger, fd: Some(_) } if s == scope && *trigger == wanted)
    }
}

impl Pressure {
    /// The triggers of `rules`, armed (what cannot be is said by [`Pressure::say_refused`]).
    /// Called before the monitor drops its privileges: PSI triggers with windows other than
    /// multiples of 2 s need `CAP_SYS_RESOURCE`, and before 6.5 every trigger does.
    pub(crate) fn new(rules: &RuleSet) -> Pressure {
        let mut pressure = Pressure {
            notify: None,
            triggers: Vec::with_capacity(2 * MAX_RULES),
            registered: false,
            refused: Vec::new(),
        };
        pressure.arm(rules);
        pressure
    }

    /// Registers every descriptor with the runtime, and those armed from now on as they are
    /// (inside the runtime: when the loop starts).
    pub(crate) fn register(&mut self) -> std::io::Result<()> {
        self.registered = true;
        if let Some(notify) = self.notify.take() {
            self.notify = Some(notify.register(Interest::READABLE)?);
        }
        for trigger in &mut self.triggers {
            if let Source::Psi { fd, .. } = &mut trigger.source
                && let Some(open) = fd.take()
            {
                *fd = Some(open.register(psi_interest())?);
            }
        }
        Ok(())
    }

    /// Which descriptor is ready, if any (the inotify instance first); each registers the
    /// task's waker otherwise.
    fn poll_fired(&self, cx: &mut Context<'_>) -> Poll<Fired> {
        if self
            .notify
            .as_ref()
            .is_some_and(|notify| notify.poll_ready(cx))
        {
            return Poll::Ready(Fired::Notices);
        }
        for (index, trigger) in self.triggers.iter().enumerate() {
            if let Source::Psi { fd: Some(fd), .. } = &trigger.source
                && fd.poll_ready(cx)
            {
                return Poll::Ready(Fired::Trigger(index));
            }
        }
        Poll::Pending
    }

    /// Arms the triggers of `rules` in place of those armed before; a PSI trigger the rules
    /// still have is kept as it is.
    pub(crate) fn arm(&mut self, rules: &RuleSet) {
        let mut old: Vec<Option<Trigger>> = std::mem::take(&mut self.triggers)
            .into_iter()
            .map(Some)
            .collect();
        self.triggers.reserve(2 * MAX_RULES);
        self.refused.clear();
        for trigger in old.iter().flatten() {
            if let (
                Source::High {
                    watch: Some(watch), ..
                },
                Some(notify),
            ) = (&trigger.source, &self.notify)
            {
                let _ = inotify::remove_watch(notify.fd(), *watch);
            }
        }
        for (index, rule) in rules.all().iter().enumerate() {
            let cgroup = rule.selector.cgroup.as_ref();
            if let Some(wanted) = rule.on_pressure {
                let scope = cgroup.map_or(Scope::Host, |cgroup| Scope::Cgroup(cgroup.clone()));
                let kept = old
                    .iter_mut()
                    .find(|t| t.as_ref().is_some_and(|t| t.is(&scope, wanted)))
                    .and_then(Option::take);
                let trigger = match kept {
                    Some(kept) => Ok(Trigger {
                        rule: index,
                        ..kept
                    }),
                    None => psi::open_trigger(&scope, wanted).map(|fd| Trigger {
                        rule: index,
                        source: Source::Psi {
                            scope,
                            trigger: wanted,
                            fd: Some(Fd::Open(fd)),
                        },
                        episode: Episode::default(),
                    }),
                };
                match trigger {
                    Ok(trigger) => self.add(trigger),
                    Err(refused) => self.refused.push((index, "pressure", refused.to_string())),
                }
            }
            if let (true, Some(cgroup)) = (rule.on_high, cgroup) {
                // Its episode carries on; the file is opened anew (the cgroup may be another
                // by the same name now).
                let episode = old
                    .iter()
                    .flatten()
                    .find(|t| matches!(&t.source, Source::High { cgroup: c, .. } if c == cgroup))
                    .map(|t| t.episode)
                    .unwrap_or_default();
                match self.follow_high(cgroup) {
                    Ok((count, watch)) => self.add(Trigger {
                        rule: index,
                        source: Source::High {
                            cgroup: cgroup.clone(),
                            count,
                            watch: Some(watch),
                        },
                        episode,
                    }),
                    Err(why) => self.refused.push((index, "high", why)),
                }
            }
        }
    }

    /// The inotify instance, made the first time a rule follows `memory.high` (instances are
    /// few: 128 a user by default).
    fn notify(&mut self) -> Result<BorrowedFd<'_>, String> {
        if self.notify.is_none() {
            let notify =
                inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).map_err(|errno| {
                    format!("no inotify instance ({errno}: fs.inotify.max_user_instances?)")
                })?;
            let notify = match self.registered {
                true => Fd::Open(notify)
                    .register(Interest::READABLE)
                    .map_err(|error| format!("cannot wait on inotify: {error}"))?,
                false => Fd::Open(notify),
            };
            self.notify = Some(notify);
        }
        Ok(self.notify.as_ref().expect("made above").fd())
    }

    /// The `high` count of `cgroup`'s `memory.events`, followed with inotify.
    fn follow_high(&mut self, cgroup: &CgroupPath) -> Result<(EventCount, i32), String> {
        let dir = cgroup.directory().map_err(|_| {
            "memory.high is cgroup v2's, and no cgroup v2 hierarchy is mounted".to_string()
        })?;
        let file = dir.join("memory.events");
        let name = CString::new(file.clone().into_os_string().into_encoded_bytes())
            .map_err(|_| "a cgroup path with a NUL byte".to_string())?;
        let count = EventCount::open(&name, HIGH).map_err(|error| {
            format!(
                "cannot read {}: {error} (memory.high needs the memory controller on in the cgroup's parent)",
                file.display()
            )
        })?;
        let notify = self.notify()?;
        let watch = inotify::add_watch(notify, name.as_c_str(), WatchFlags::MODIFY)
            .map_err(|errno| format!("cannot follow {}: {errno}", file.display()))?;
        Ok((count, watch))
    }

    /// Puts `trigger` in force: registered with the runtime, once the loop runs.
    fn add(&mut self, mut trigger: Trigger) {
        if let (true, Source::Psi { fd, .. }) = (self.registered, &mut trigger.source)
            && let Some(open) = fd.take()
        {
            match open.register(psi_interest()) {
                Ok(waited) => *fd = Some(waited),
                Err(error) => {
                    let why = format!("cannot wait on it: {error}");
                    self.refused.push((trigger.rule, "pressure", why));
                    return;
                }
            }
        }
        self.triggers.push(trigger);
    }

    /// Says, once, each trigger of `rules` that could not be armed, and why.
    pub(crate) fn say_refused(&self, rules: &RuleSet) {
        for (index, trigger, why) in &self.refused {
            let Some(rule) = rules.all().get(*index) else {
                continue;
            };
            tracing::warn!(
                event = "pressure_unavailable",
                rule = rule.name.as_str(),
                trigger,
                "the rule's {trigger} trigger is not armed: {why}"
            );
        }
    }

    /// Reads away the inotify notices; a followed `memory.events` gone (its cgroup removed)
    /// is said and let go of. Allocates nothing.
    fn drain_notices(&mut self, rules: &RuleSet) {
        let Some(notify) = &self.notify else {
            return;
        };
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(notify.fd(), &mut buf);
        while let Ok(event) = reader.next() {
            if !event.events().contains(ReadFlags::IGNORED) {
                continue;
            }
            for trigger in &mut self.triggers {
                if let Source::High { cgroup, watch, .. } = &mut trigger.source
                    && *watch == Some(event.wd())
                {
                    *watch = None;
                    say_gone(rules, trigger.rule, "high", cgroup);
                }
            }
        }
    }
}

/// Says that the cgroup of rule `index`'s `trigger` was removed.
fn say_gone(rules: &RuleSet, index: usize, trigger: &str, cgroup: &impl std::fmt::Display) {
    if let Some(rule) = rules.all().get(index) {
        tracing::warn!(
            event = "pressure_unavailable",
            rule = rule.name.as_str(),
            trigger,
            "cgroup {cgroup} was removed: the rule's {trigger} trigger is armed again when it is made"
        );
    }
}

impl Monitor {
    /// Arms the triggers of the rules in force anew (after a reload, or a rule's cgroup made
    /// or removed), and says what cannot be.
    pub(super) fn arm_pressure(&mut self) {
        if let Some(pressure) = self.pressure.as_mut() {
            pressure.arm(&self.in_force.rules);
            pressure.say_refused(&self.in_force.rules);
        }
    }

    /// Acts on what [`fired`] found, at `now`: the followed `memory.events` files read for
    /// their `high` counts, or a PSI trigger that fired (or went, its cgroup removed).
    pub(super) fn on_pressure(&mut self, fired: Fired, now: Instant) {
        let Some(mut pressure) = self.pressure.take() else {
            return;
        };
        match fired {
            Fired::Notices => {
                pressure.drain_notices(&self.in_force.rules);
                for trigger in &mut pressure.triggers {
                    let Source::High {
                        count,
                        watch: Some(_),
                        ..
                    } = &mut trigger.source
                    else {
                        continue;
                    };
                    let rise = count.rise();
                    if rise > 0 {
                        self.fire(trigger, rise, now);
                    }
                }
            }
            Fired::Trigger(index) => {
                if let Some(trigger) = pressure.triggers.get_mut(index) {
                    self.psi_fired(trigger, now);
                }
            }
        }
        self.pressure = Some(pressure);
    }

    /// A PSI trigger's descriptor was ready at `now`: the trigger fired, or its cgroup went.
    fn psi_fired(&mut self, trigger: &mut Trigger, now: Instant) {
        let Source::Psi { scope, fd, .. } = &mut trigger.source else {
            return;
        };
        // The event that made it ready is taken (polling a trigger consumes it); a file whose
        // cgroup was removed says POLLERR to every poll.
        let gone = fd.as_ref().is_none_or(|fd| {
            let fd = fd.fd();
            let mut fds = [PollFd::new(&fd, PollFlags::PRI)];
            let _ = rustix::event::poll(&mut fds, Some(&Timespec::default()));
            fds[0]
                .revents()
                .intersects(PollFlags::ERR | PollFlags::NVAL)
        });
        if gone {
            if fd.take().is_some() {
                say_gone(&self.in_force.rules, trigger.rule, "pressure", scope);
            }
            return;
        }
        self.fire(trigger, 1, now);
    }

    /// `trigger` fired (`count`: how many times, as its source says), at `now`: a new
    /// episode is said and counted, and the rule's hook run; with `signal-largest` or
    /// `signal-fastest`, the process the rule watches that its action picks is signalled when
    /// a signal is due.
    fn fire(&mut self, trigger: &mut Trigger, count: u64, now: Instant) {
        let index = trigger.rule;
        let Some(rule) = self.in_force.rules.all().get(index) else {
            return;
        };
        let quiet = trigger.quiet();
        let new = trigger.episode.fire(now, quiet);
        let pick = rule
            .pressure_action
            .pick()
            .filter(|_| trigger.episode.signal_due(now, rule.repeat));
        if !new && pick.is_none() {
            return;
        }
        let metrics = &self.in_force.actions(index).metrics;
        let (event, hook_event) = match &trigger.source {
            Source::Psi { .. } => ("pressure", HookEvent::Pressure),
            Source::High { .. } => ("high_throttled", HookEvent::High),
        };
        if new {
            let counter = match hook_event {
                HookEvent::High => &metrics.high_episodes,
                _ => &metrics.pressure_episodes,
            };
            if let Some(counter) = counter {
                counter.inc();
            }
        }
        let signalled = pick.and_then(|pick| {
            // Tried once per repeat at most, whether a process was there or not.
            trigger.episode.signal_tried(now);
            self.signal_picked_one(index, pick, now)
        });
        if !new && signalled.is_none() {
            return;
        }
        let rule = self.in_force.rules.get(index);
        let fires = trigger.episode.fires;
        let s = signalled.as_ref();
        let (pid, name, rss_bytes) = (s.map(|s| s.pid), s.map(|s| s.name), s.map(|s| s.rss));
        let growth_bytes_per_s = s.map(|s| s.growth);
        let rss = rss_bytes.map(|rss| tracing::field::display(Bytes(rss)));
        let name = name.map(tracing::field::display);
        let signal = s.map(|_| tracing::field::display(rule.signal));
        let result = s.map(|s| tracing::field::display(s.delivery));
        let action = rule.pressure_action.name();
        let message = match (new, event, pick.is_some() && s.is_none()) {
            (false, _, _) => "still under pressure; a watched process signalled again",
            (true, "pressure", false) => "memory pressure",
            (true, "pressure", true) => "memory pressure; no watched process to signal",
            (true, _, false) => "the cgroup is throttled at its memory.high",
            (true, _, true) => {
                "the cgroup is throttled at its memory.high; no watched process to signal"
            }
        };
        match &trigger.source {
            Source::Psi { scope, trigger, .. } => {
                tracing::warn!(event, rule = rule.name.as_str(), %scope, %trigger, fires, action, pid, name, rss, rss_bytes, growth_bytes_per_s, signal, result, "{message}")
            }
            Source::High { cgroup, .. } => {
                tracing::warn!(event, rule = rule.name.as_str(), %cgroup, high = count, fires, action, pid, name, rss, rss_bytes, growth_bytes_per_s, signal, result, "{message}")
            }
        }
        if !new {
            return;
        }
        if let (Some(hook), Some(exec)) = (&self.actions.hook, &rule.exec) {
            hook.fire(Breach {
                event: hook_event,
                exec: exec.clone(),
                rule: rule.name.clone(),
                pid: s.map_or(0, |s| s.pid),
                name: s.map(|s| s.name.to_string()).unwrap_or_default(),
                uid: s.map_or(0, |s| s.uid),
                user: s.map(|s| UserName(s.uid).to_string()).unwrap_or_default(),
                rss: s.map_or(0, |s| s.rss),
                limit: 0,
                signal: s.map(|_| rule.signal.to_string()).unwrap_or_default(),
                // The pick alone is signalled, whatever the rule's `act-on`.
                acted_on: s.map(|_| ActOn::Process),
                profile: String::new(),
                container_id: String::new(),
                pod_uid: String::new(),
            });
        }
    }

    /// Sends rule `index`'s signal to the process watched under it that `pick` prefers, read
    /// at `now`; who it was and what became of the signal, when there was one.
    fn signal_picked_one(&mut self, index: usize, pick: Pick, now: Instant) -> Option<Signalled> {
        let chosen = self.pick(index, pick, now)?;
        let (picked, delivery) = self.signal_picked(index, chosen.pid)?;
        Some(Signalled {
            pid: chosen.pid,
            name: *picked.comm(),
            uid: picked.uid(),
            rss: chosen.rss,
            growth: chosen.growth,
            delivery,
        })
    }
}

/// The process a trigger signalled.
struct Signalled {
    pid: i32,
    name: crate::system::procfs::Comm,
    uid: u32,
    rss: u64,
    /// Bytes per second since its last reading.
    growth: u64,
    delivery: Delivery,
}
