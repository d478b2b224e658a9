//! What the loops wait on besides their own source (kernel events, or poll ticks): the
//! signals asking to stop or reload, the changes followed, the service manager's watchdog,
//! liveness questions, and a changed rules file settling.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};

use crate::Error;
use crate::act::metrics::Metrics;
use crate::host::systemd::Service;

/// What the loops wait on besides their own source: the service manager's watchdog, the
/// signals asking to stop or reload, the changes followed, and liveness questions.
pub(crate) struct Waits<'a> {
    /// The service manager (systemd), told of readiness and reloads, and pinged.
    pub(crate) service: &'a mut Service,
    /// SIGINT, SIGTERM and SIGHUP.
    pub(crate) shutdown: &'a mut Shutdown,
    /// Readiness of the changes followed ([`crate::system::inotify`]).
    pub(crate) changes: Option<AsyncFd<OwnedFd>>,
    /// Poll mode: a followed cgroup's count of OOM kills may have changed.
    pub(crate) oom_kills: Option<AsyncFd<OwnedFd>>,
    /// `/healthz` asks the loop itself whether it runs.
    pub(crate) metrics: Arc<Metrics>,
}

/// What woke a loop besides its own source (see [`Waits::next`]).
pub(crate) enum Wake {
    /// Something followed changed.
    Changed(std::io::Result<()>),
    /// A followed cgroup's count of OOM kills may have changed.
    OomKilled(std::io::Result<()>),
    /// The changed rules file has settled: time to read it.
    RulesFileSettled,
    /// Time to say which rules still select no process.
    Unmatched,
    /// The service manager's watchdog wants its ping.
    Watchdog,
    /// `/healthz` asks whether the loop runs.
    Liveness,
    /// A signal asks to stop or reload.
    Request(Request),
}

impl Waits<'_> {
    /// Until one of them wakes the loop (`reload_at`: when a changed rules file is read;
    /// `unmatched_at`: when the rules that select nothing are named again).
    pub(crate) async fn next(
        &mut self,
        reload_at: Option<Instant>,
        unmatched_at: Option<Instant>,
    ) -> Wake {
        tokio::select! {
            ready = changed(&self.changes) => Wake::Changed(ready),
            ready = changed(&self.oom_kills) => Wake::OomKilled(ready),
            () = at(reload_at) => Wake::RulesFileSettled,
            () = at(unmatched_at) => Wake::Unmatched,
            () = self.service.watchdog_due() => Wake::Watchdog,
            () = self.metrics.liveness.asked() => Wake::Liveness,
            request = self.shutdown.next() => Wake::Request(request),
        }
    }
}

/// `fd` registered with the runtime for `interest`, to be waited on (the waiter owns it).
pub(crate) fn register(fd: OwnedFd, interest: Interest) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the descriptor, which stays open and the same for as long as
    // it lives.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(std::io::Error::from)
}

/// Until `deadline` (never, without one).
async fn at(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Until something followed changed (never, when nothing is followed).
async fn changed(changes: &Option<AsyncFd<OwnedFd>>) -> std::io::Result<()> {
    match changes {
        Some(fd) => fd.readable().await.map(|mut guard| guard.clear_ready()),
        None => std::future::pending().await,
    }
}

/// What a signal to the monitor asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// Stop (SIGINT, SIGTERM).
    Stop,
    /// Read the rules again (SIGHUP).
    Reload,
}

/// SIGINT and SIGTERM (stop) and SIGHUP (read the rules again), caught from the moment this
/// is made: a stop asked for while the monitor is still starting is a clean stop too, and a
/// SIGHUP then does not kill it.
#[derive(Debug)]
pub struct Shutdown {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Shutdown {
    /// Starts catching SIGINT, SIGTERM and SIGHUP (inside a tokio runtime).
    pub fn listen() -> Result<Shutdown, Error> {
        Ok(Shutdown {
            interrupt: signal(SignalKind::interrupt()).map_err(Error::Signals)?,
            terminate: signal(SignalKind::terminate()).map_err(Error::Signals)?,
            hangup: signal(SignalKind::hangup()).map_err(Error::Signals)?,
        })
    }

    /// The next request: a stop (SIGINT, SIGTERM) or a reload (SIGHUP).
    pub(crate) async fn next(&mut self) -> Request {
        tokio::select! {
            _ = self.interrupt.recv() => Request::Stop,
            _ = self.terminate.recv() => Request::Stop,
            _ = self.hangup.recv() => Request::Reload,
        }
    }
}
