//! A gate for shell commands the monitor runs (hooks, `cmd:` writers): each waits at the gate
//! until the test opens it, so the test decides how long the monitor's runners are held.

use std::path::{Path, PathBuf};

/// A directory of its own, whose file `open` opens the gate; removed when dropped.
pub struct Gate {
    dir: PathBuf,
}

impl Gate {
    /// A closed gate in a new directory named after `label`.
    pub fn new(label: &str) -> Gate {
        let dir = std::env::temp_dir().join(crate::unique_name(label));
        std::fs::create_dir_all(&dir).expect("make the gate's directory");
        Gate { dir }
    }

    /// Its directory, where commands may leave files for the test.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Shell commands that wait until the gate is open (or, should the test be gone, a
    /// minute at most).
    pub fn wait(&self) -> String {
        format!(
            "i=0; while [ ! -e {} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done",
            self.dir.join("open").display()
        )
    }

    /// Opens the gate: every command waiting at it goes on, and any later one passes.
    pub fn open(&self) {
        std::fs::write(self.dir.join("open"), "").expect("open the gate");
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
