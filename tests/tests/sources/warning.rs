//! The warning stage (`--warn-at`), in poll mode and in eBPF mode (where the kernel side
//! reports the warning level's crossings as it reports the limit's): a process that grows past
//! the warning level and stops under the limit is warned about once, its hook runs with
//! `MM_EVENT=warn`, and it is never signalled; once it goes on past the limit, its breach gets
//! the one signal there is.

use std::path::{Path, PathBuf};

use memory_monitor_tests::{Monitor, Target, unique_name, wait_until};

const USR1: i32 = libc::SIGUSR1;

/// A way to run the monitor: its mode and how eBPF mode's kernel side attaches, and whether
/// `statm` is taken for inexact (fault injection), so that the kernel side's own exact sum
/// decides where this kernel can run it.
struct Way {
    args: &'static [&'static str],
    statm_inexact: bool,
}

const WAYS: [Way; 4] = [
    Way {
        args: &["--mode", "poll", "-i", "100ms"],
        statm_inexact: false,
    },
    Way {
        args: &["--mode", "ebpf", "--attach", "tracepoint"],
        statm_inexact: false,
    },
    Way {
        args: &["--mode", "ebpf", "--attach", "tp-btf"],
        statm_inexact: false,
    },
    Way {
        args: &["--mode", "ebpf", "--attach", "tp-btf"],
        statm_inexact: true,
    },
];

impl Way {
    /// The monitor started with `args` (this way's among them) and watching its process, and
    /// this way's name for the assertions' messages.
    fn start(&self, args: &[&str]) -> (Monitor, String) {
        let mut monitor = Monitor::start_with(args, |command| {
            if self.statm_inexact {
                command.env("MEMORY_MONITOR_INJECT_FAULT", "statm-inexact");
            }
        });
        monitor.expect_log(&["checked", "watched=1"]);
        let context = format!("{:?} statm-inexact={}", self.args, self.statm_inexact);
        (monitor, context)
    }
}

/// What each hook run wrote, one file each, in the order the runs finished.
fn hook_runs(dir: &Path) -> Vec<String> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    runs.retain(|path| {
        path.file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("run."))
    });
    runs.sort_by_key(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok());
    runs.iter()
        .map(|path| {
            std::fs::read_to_string(path)
                .unwrap()
                .trim_end()
                .to_string()
        })
        .collect()
}

#[test]
#[ignore = "needs root"]
fn a_process_past_its_warning_level_is_warned_once_and_signalled_only_at_its_limit() {
    for way in WAYS {
        let dir = std::env::temp_dir().join(unique_name("mmw-hook"));
        std::fs::create_dir_all(&dir).unwrap();
        // Each run writes a file of its own aside and renames it into place: complete once there.
        let command = format!(
            "echo \"$MM_EVENT $MM_PID $MM_SIGNAL\" > {0}/.run.$$ && mv {0}/.run.$$ {0}/run.$$",
            dir.display()
        );
        let name = unique_name("mmw");
        let mut target = Target::spawn(&name);
        let pid = format!("pid={}", target.pid());
        let mut args = way.args.to_vec();
        args.extend_from_slice(&[
            "-m",
            "32M",
            "--warn-at",
            "50%",
            "-s",
            "USR1",
            "--repeat",
            "never",
            "-v",
            "--exec",
            &command,
            &name,
        ]);
        let (mut monitor, context) = way.start(&args);

        // Past 16 MiB, the warning level, and well under 32 MiB, the limit; then a little more,
        // still under it: one warning.
        target.grow(20);
        let warned = monitor.expect_log(&[r#"event="warn""#, &pid]);
        assert!(
            warned.contains("warn_at_bytes=16777216") && warned.contains("limit_bytes=33554432"),
            "{context}: {warned}"
        );
        if way.args.contains(&"ebpf") {
            // Found on the kernel side's report of the crossing (or at the end of the gap a
            // report within the counters' error was held back for), never by a look at /proc.
            assert_eq!(
                monitor.count(&["checked"]),
                1,
                "{context}: one look at start-up only: {}",
                monitor.log_text()
            );
        }
        target.grow(4);
        assert!(
            wait_until(|| hook_runs(&dir).len() == 1),
            "{context}: {}",
            monitor.log_text()
        );
        assert_eq!(
            hook_runs(&dir),
            [format!("warn {}", target.pid())],
            "{context}"
        );

        // Past the limit: the breach, its hook, and the one signal the process ever gets.
        target.grow(16);
        assert!(
            target.wait_signal(USR1),
            "{context}: {}",
            monitor.log_text()
        );
        monitor.expect_log(&["over the limit", &pid, "result=sent"]);
        assert!(
            wait_until(|| hook_runs(&dir).len() == 2),
            "{context}: {}",
            monitor.log_text()
        );
        assert_eq!(
            hook_runs(&dir)[1],
            format!("breach {} SIGUSR1", target.pid()),
            "{context}"
        );
        assert_eq!(
            target.signals(),
            [USR1],
            "{context}: one signal, the breach's"
        );
        assert_eq!(
            monitor.count(&[r#"event="warn""#, &pid]),
            1,
            "{context}: {}",
            monitor.log_text()
        );
        assert!(monitor.stop().success());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
#[ignore = "needs root"]
fn back_under_its_warning_level_a_process_is_warned_again_at_its_next_crossing() {
    for way in WAYS {
        let name = unique_name("mmw-re");
        let mut target = Target::spawn(&name);
        let pid = format!("pid={}", target.pid());
        let mut args = way.args.to_vec();
        args.extend_from_slice(&[
            "-m",
            "32M",
            "--warn-at",
            "16M",
            "-s",
            "USR1",
            "--repeat",
            "never",
            "-v",
            &name,
        ]);
        let (mut monitor, context) = way.start(&args);
        let ended = [r#"event="warn_ended""#, pid.as_str()];
        target.grow(20);
        monitor.expect_count(&[r#"event="warn""#, &pid], 1);
        // Freed back under the level (with madvise, then with munmap), and past it again.
        target.madvise(20);
        monitor.expect_count(&ended, 1);
        target.grow(20);
        monitor.expect_count(&[r#"event="warn""#, &pid], 2);
        target.shrink(20);
        monitor.expect_count(&ended, 2);
        target.grow(20);
        monitor.expect_count(&[r#"event="warn""#, &pid], 3);
        // Then past the limit, which is the one signal: no warning ever sent one.
        target.grow(16);
        assert!(
            target.wait_signal(USR1),
            "{context}: {}",
            monitor.log_text()
        );
        assert_eq!(target.signals(), [USR1], "{context}");
        assert_eq!(
            monitor.count(&[r#"event="warn""#, &pid]),
            3,
            "{context}: {}",
            monitor.log_text()
        );
        assert!(monitor.stop().success());
    }
}
