//! The lines a child process writes, collected by a thread, for the drivers to wait on.

use std::io::{BufRead, BufReader};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Instant;

use crate::patience;

/// Lines a child process writes, collected by a thread.
pub(crate) struct Lines {
    rx: Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    pub(crate) fn new(stream: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Looks at lines from index `start` on, collecting more as they come, until one satisfies
    /// `want` (returned with its index) or [`patience`] passes (None).
    pub(crate) fn wait_from(
        &mut self,
        start: usize,
        mut want: impl FnMut(&str) -> bool,
    ) -> Option<(usize, String)> {
        let deadline = Instant::now() + patience();
        let mut next = start;
        loop {
            while next < self.seen.len() {
                if want(&self.seen[next]) {
                    return Some((next, self.seen[next].clone()));
                }
                next += 1;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Waits for any line, old or new, that satisfies `want`.
    pub(crate) fn wait_for(&mut self, want: impl FnMut(&str) -> bool) -> Option<String> {
        self.wait_from(0, want).map(|(_, line)| line)
    }

    /// Takes in every line already written, without waiting.
    pub(crate) fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }
}
