//! Other monitors on this host with the same rules. Two monitors selecting the same processes
//! each signal them (two breach lines for one PID, two signals for one crossing), and neither
//! would know of the other. So a monitor that acts takes a lock under `/run` named after its
//! rules and holds it while it runs; one that finds the lock held names the monitor holding
//! it. The lock is `flock(2)`'s: the kernel releases it however its holder exits, so a file
//! left behind never blocks anything.
//!
//! Only rules that read the same are compared: two monitors whose rules merely overlap are not
//! noticed. Only root writes `/run`; another user's monitor signals only that user's
//! processes, and takes no lock.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

/// Where the locks are.
pub(crate) const DIR: &str = "/run/memory-monitor";

/// The lock of a set of rules, held until dropped (or the monitor exits, however it exits).
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

/// What taking the lock found.
#[derive(Debug)]
pub(crate) enum Found {
    /// The lock is this monitor's now.
    Taken(Lock),
    /// Another monitor holds it: what to say about it.
    Held(String),
    /// No lock could be taken (not root, no `/run`): nothing is known of other monitors.
    Unknown,
}

/// Takes the lock of the rules `rules_text` describes, in `dir`.
pub(crate) fn take(dir: &Path, rules_text: &str) -> Found {
    let path = lock_path(dir, rules_text);
    let opened = std::fs::create_dir_all(dir).and_then(|()| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
    });
    let mut file = match opened {
        Ok(file) => file,
        Err(error) => {
            tracing::debug!(
                "cannot take {} ({error}); other monitors go unnoticed",
                path.display()
            );
            return Found::Unknown;
        }
    };
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            // Who holds it, for the next monitor to name.
            let written = file
                .set_len(0)
                .and_then(|()| write!(file, "{}", std::process::id()));
            if let Err(error) = written {
                tracing::debug!("cannot write {} ({error})", path.display());
            }
            Found::Taken(Lock { _file: file })
        }
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Found::Held(held_by(holder.trim(), &path))
        }
        Err(error) => {
            tracing::debug!(
                "cannot lock {} ({error}); other monitors go unnoticed",
                path.display()
            );
            Found::Unknown
        }
    }
}

/// The warning about the monitor `pid` holding the lock at `path`.
fn held_by(pid: &str, path: &Path) -> String {
    let command = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            let words: Vec<String> = raw
                .split(|&b| b == 0)
                .filter(|word| !word.is_empty())
                .map(|word| String::from_utf8_lossy(word).into_owned())
                .collect();
            // Its arguments are its own, but kept to one line all the same.
            let line = words.join(" ");
            line.chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect::<String>()
        })
        .unwrap_or_default();
    format!(
        "another memory-monitor with the same rules runs on this host (PID {pid}: {}; it holds {}): each signals the processes both select; stop one of them",
        command,
        path.display()
    )
}

/// The lock's file for rules that read `rules_text`: named after a hash of it (FNV-1a, which
/// is the same in every build, unlike the standard library's hasher).
fn lock_path(dir: &Path, rules_text: &str) -> PathBuf {
    let hash = rules_text
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    dir.join(format!("rules-{hash:016x}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_taker_names_the_first_and_the_lock_frees_with_it() {
        let dir = std::env::temp_dir().join(format!("mm-peers-{}", std::process::id()));
        let first = take(&dir, "rule 'a'");
        assert!(matches!(first, Found::Taken(_)), "{first:?}");
        match take(&dir, "rule 'a'") {
            Found::Held(said) => {
                assert!(
                    said.contains(&format!("PID {}", std::process::id())),
                    "{said}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Other rules, another lock.
        assert!(matches!(take(&dir, "rule 'b'"), Found::Taken(_)));
        drop(first);
        // Freed with its holder's descriptor. Other tests in this process fork children, and
        // a child holds a copy of every descriptor between its fork and its exec (which
        // closes them): the lock is free once no such copy is left, within the patience.
        let deadline = std::time::Instant::now() + crate::testing::patience();
        while !matches!(take(&dir, "rule 'a'"), Found::Taken(_)) {
            assert!(
                std::time::Instant::now() < deadline,
                "the lock outlived its holder"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
