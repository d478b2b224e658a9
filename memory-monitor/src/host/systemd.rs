//! Running under systemd (`Type=notify`): readiness, reloads, status and watchdog pings over
//! the notification socket systemd names in `NOTIFY_SOCKET`.
//!
//! The socket is connected once at start-up and each message is a fixed byte string or
//! formatted on the stack, so a notification costs one `send` and no allocation. Without
//! `NOTIFY_SOCKET` (not under systemd) nothing happens; without `WATCHDOG_USEC` (no
//! `WatchdogSec=`) there are no pings, so an idle monitor still never wakes up.

use std::fmt::{self, Write as _};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to systemd's notification socket.
#[derive(Debug)]
pub(crate) struct Notifier {
    socket: UnixDatagram,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Connects to `NOTIFY_SOCKET` when systemd set it (a path, or `@name` for an abstract
    /// socket); `None` otherwise, or when it cannot be reached (logged).
    pub(crate) fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let connected = (|| {
            let address = match path.as_encoded_bytes() {
                [b'@', name @ ..] => {
                    use std::os::linux::net::SocketAddrExt as _;
                    SocketAddr::from_abstract_name(name)?
                }
                _ => SocketAddr::from_pathname(&path)?,
            };
            let socket = UnixDatagram::unbound()?;
            socket.connect_addr(&address)?;
            Ok::<_, std::io::Error>(socket)
        })();
        let socket = match connected {
            Ok(socket) => socket,
            Err(error) => {
                tracing::warn!(
                    event = "notify_failed",
                    "cannot reach systemd's NOTIFY_SOCKET {path:?}: {error}"
                );
                return None;
            }
        };
        Some(Notifier {
            socket,
            watchdog: watchdog_interval(),
        })
    }

    /// How often to ping the watchdog (half its timeout), when systemd runs one for us.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Start-up (or a reload) is done: `READY=1` and a status line saying what is watched.
    pub(crate) fn ready(&self, watched: usize, event_driven: bool) {
        let mode = if event_driven { "ebpf" } else { "poll" };
        self.send_formatted(format_args!(
            "READY=1\nSTATUS=watching {watched} processes ({mode} mode)"
        ));
    }

    /// Reloading the rules: `RELOADING=1` and the time it began on `CLOCK_MONOTONIC`, which
    /// systemd asks for alongside (it tells this reload from an earlier one).
    pub(crate) fn reloading(&self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
        self.send_formatted(format_args!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    /// Still alive.
    pub(crate) fn ping(&self) {
        self.send(b"WATCHDOG=1");
    }

    /// Shutting down.
    pub(crate) fn stopping(&self) {
        self.send(b"STOPPING=1");
    }

    fn send_formatted(&self, message: fmt::Arguments<'_>) {
        let mut buffer = Message::default();
        match buffer.write_fmt(message) {
            Ok(()) => self.send(buffer.as_bytes()),
            Err(fmt::Error) => tracing::debug!("systemd notification too long: {message}"),
        }
    }

    fn send(&self, message: &[u8]) {
        if let Err(error) = self.socket.send(message) {
            tracing::debug!("systemd notification not sent: {error}");
        }
    }
}

/// A notification formatted on the stack (systemd's are a few short lines).
struct Message {
    bytes: [u8; 256],
    len: usize,
}

impl Default for Message {
    fn default() -> Message {
        Message {
            bytes: [0; 256],
            len: 0,
        }
    }
}

impl Message {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Write for Message {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len + text.len();
        let room = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        room.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Half of `WATCHDOG_USEC`, when it is set for this process (`WATCHDOG_PID` absent or ours).
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// The monitor's side of systemd: notifications, and the watchdog's pace.
#[derive(Debug)]
pub(crate) struct Service {
    notifier: Option<Notifier>,
    ticker: Option<tokio::time::Interval>,
}

impl Service {
    /// Connects when running under systemd (inside a tokio runtime, for the watchdog's timer).
    pub(crate) fn connect() -> Service {
        let notifier = Notifier::from_env();
        let ticker = notifier
            .as_ref()
            .and_then(Notifier::watchdog_interval)
            .map(tokio::time::interval);
        Service { notifier, ticker }
    }

    /// Start-up, or a reload, is done: `watched` processes are watched now.
    pub(crate) fn ready(&self, watched: usize, event_driven: bool) {
        if let Some(notifier) = &self.notifier {
            notifier.ready(watched, event_driven);
        }
    }

    /// A reload of the rules begins (end it with [`Service::ready`]).
    pub(crate) fn reloading(&self) {
        if let Some(notifier) = &self.notifier {
            notifier.reloading();
        }
    }

    /// Resolves when the watchdog is due a ping; never without a watchdog.
    pub(crate) async fn watchdog_due(&mut self) {
        match &mut self.ticker {
            Some(ticker) => {
                ticker.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Pings the watchdog.
    pub(crate) fn ping(&self) {
        if let Some(notifier) = &self.notifier {
            notifier.ping();
        }
    }

    /// Shutting down.
    pub(crate) fn stopping(&self) {
        if let Some(notifier) = &self.notifier {
            notifier.stopping();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_formatted_whole_or_not_at_all() {
        let mut message = Message::default();
        write!(message, "READY=1\nSTATUS=watching {} processes", 3).unwrap();
        assert_eq!(message.as_bytes(), b"READY=1\nSTATUS=watching 3 processes");
        let mut message = Message::default();
        assert!(write!(message, "STATUS={}", "x".repeat(300)).is_err());
    }
}
