//! `--exec` (and each rule's `exec`): a command run on each breach, after the signal, on
//! threads of its own: a slow or stuck hook never holds up the monitor or a signal. At most
//! [`CONCURRENCY`] run at once, whatever rule they come from; each is killed, with whatever it
//! started, after its timeout (the crate's `shell` module runs them).

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use crate::choice::Choice as _;
use crate::host::shell::run_shell;
use crate::rules::{ActOn, Exec};

/// Hooks running at once, at most.
pub(crate) const CONCURRENCY: usize = 4;
/// Breaches waiting for a free hook runner; beyond them a breach's hook is skipped (logged).
const QUEUE: usize = 64;
/// Why a hook runs: `MM_EVENT`, the `event` of the log line it goes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HookEvent {
    /// The process went over its limit (`breach`).
    Breach,
    /// The process went over its rule's warning level (`warn`): no signal was sent.
    Warn,
    /// The processes its rule watches went over the rule's `group-limit` together, and this
    /// one was signalled (`group_breach`): `MM_RSS_BYTES` and `MM_LIMIT_BYTES` are the
    /// group's.
    GroupBreach,
    /// Its growth trend reaches the limit within the rule's horizon (`leak_suspected`): no
    /// signal was sent.
    LeakSuspected,
    /// Memory pressure fired the rule's trigger (`pressure`).
    Pressure,
    /// The rule's cgroup was throttled at its `memory.high` (`high_throttled`).
    High,
}

impl HookEvent {
    /// Its name in `MM_EVENT`.
    fn name(self) -> &'static str {
        match self {
            HookEvent::Breach => "breach",
            HookEvent::Warn => "warn",
            HookEvent::GroupBreach => "group_breach",
            HookEvent::LeakSuspected => "leak_suspected",
            HookEvent::Pressure => "pressure",
            HookEvent::High => "high",
        }
    }
}

/// What a hook is told about a breach or a warning, as `MM_*` environment variables, and
/// which hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Breach {
    /// `MM_EVENT`.
    pub(crate) event: HookEvent,
    /// The hook: its command and timeout.
    pub(crate) exec: Exec,
    /// `MM_RULE`: the rule's name.
    pub(crate) rule: String,
    /// `MM_PID`.
    pub(crate) pid: i32,
    /// `MM_NAME`.
    pub(crate) name: String,
    /// `MM_UID`: the user it runs as (effective uid).
    pub(crate) uid: u32,
    /// `MM_USER`: that user's name (the uid where it has none).
    pub(crate) user: String,
    /// `MM_RSS_BYTES`.
    pub(crate) rss: u64,
    /// `MM_LIMIT_BYTES`.
    pub(crate) limit: u64,
    /// `MM_SIGNAL`: the signal sent (its name), or what became of it; empty at a warning.
    pub(crate) signal: String,
    /// `MM_ACTED_ON`: what the signal reached (the breach line's `acted_on`); empty, `None`,
    /// where no signal was due.
    pub(crate) acted_on: Option<ActOn>,
    /// `MM_PROFILE`: the name of the breach's profile, empty without one.
    pub(crate) profile: String,
    /// `MM_CONTAINER_ID`: the container runtime's ID of its container, empty outside one.
    pub(crate) container_id: String,
    /// `MM_POD_UID`: its pod's UID, empty outside a pod.
    pub(crate) pod_uid: String,
}

/// Runs breach hooks.
#[derive(Debug)]
pub(crate) struct ExecHook {
    jobs: SyncSender<Breach>,
}

impl ExecHook {
    /// Starts [`CONCURRENCY`] hook runners.
    pub(crate) fn start() -> std::io::Result<ExecHook> {
        let (jobs, queue) = sync_channel::<Breach>(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for runner in 0..CONCURRENCY {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("mm-exec-{runner}"))
                .spawn(move || run(&queue))?;
        }
        Ok(ExecHook { jobs })
    }

    /// Queues the hook for `breach`; returns at once.
    pub(crate) fn fire(&self, breach: Breach) {
        if let Err(TrySendError::Full(breach) | TrySendError::Disconnected(breach)) =
            self.jobs.try_send(breach)
        {
            tracing::warn!(event = "exec_skipped", pid = breach.pid, name = %breach.name, "--exec skipped: too many hooks already waiting");
        }
    }
}

fn run(queue: &Mutex<Receiver<Breach>>) {
    loop {
        let Ok(breach) = queue.lock().expect("not poisoned").recv() else {
            return;
        };
        let env = [
            ("MM_EVENT", breach.event.name().to_string()),
            ("MM_PID", breach.pid.to_string()),
            ("MM_NAME", breach.name.clone()),
            ("MM_UID", breach.uid.to_string()),
            ("MM_USER", breach.user.clone()),
            ("MM_RSS_BYTES", breach.rss.to_string()),
            ("MM_LIMIT_BYTES", breach.limit.to_string()),
            ("MM_SIGNAL", breach.signal.clone()),
            (
                "MM_ACTED_ON",
                breach.acted_on.map_or("", ActOn::name).to_owned(),
            ),
            ("MM_PROFILE", breach.profile.clone()),
            ("MM_RULE", breach.rule.clone()),
            ("MM_CONTAINER_ID", breach.container_id.clone()),
            ("MM_POD_UID", breach.pod_uid.clone()),
        ];
        if let Err(why) = run_shell(&breach.exec.command, &env, b"", breach.exec.timeout) {
            tracing::warn!(event = "exec_failed", pid = breach.pid, name = %breach.name, rule = %breach.rule, "exec: {why}");
        }
    }
}
