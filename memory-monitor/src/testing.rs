//! What the unit tests share: real processes to watch.

use std::process::{Child, Command, Stdio};

/// The longest a wait in the unit tests may take before the test gives up: the integration
/// tests' patience (`memory_monitor_tests::patience`), by the same rule, 30 s, or 90 s in the
/// emulated guests of `cargo xtask vmtest` (`MEMORY_MONITOR_VMTEST`). A bound so that a broken
/// build fails instead of hanging, never a timing assertion.
pub(crate) fn patience() -> std::time::Duration {
    match std::env::var_os("MEMORY_MONITOR_VMTEST") {
        Some(_) => std::time::Duration::from_secs(90),
        None => std::time::Duration::from_secs(30),
    }
}

/// A `sleep` under a name of its own (no other process on the machine has it), killed when
/// dropped.
pub(crate) struct Sleeper(Child, String);

impl Sleeper {
    /// Starts one, and returns once it bears its name: `spawn` returns once the child has
    /// begun its exec, but the kernel names it only later in the exec, and until then it
    /// bears the name of the thread that spawned it.
    pub(crate) fn start() -> Sleeper {
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("mmw{}x{n}", std::process::id() % 100_000);
        let link = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/bin/sleep", &link).unwrap();
        let child = Command::new(&link)
            .arg("600")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let _ = std::fs::remove_file(&link);
        let comm = format!("/proc/{}/comm", child.id());
        let deadline = std::time::Instant::now() + patience();
        while std::fs::read_to_string(&comm).map_or(true, |c| c.trim_end() != name) {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} never took its name"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Sleeper(child, name)
    }

    /// Its name.
    pub(crate) fn name(&self) -> &str {
        &self.1
    }

    /// Its process ID.
    pub(crate) fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Kills it, without reaping it: it stays a zombie until [`end`](Self::end) or drop.
    pub(crate) fn kill(&mut self) {
        let _ = self.0.kill();
    }

    /// Kills and reaps it: its PID is free for another process.
    pub(crate) fn end(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.end();
    }
}
