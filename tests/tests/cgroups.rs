//! `--cgroup` and limits given as a share of a cgroup's memory limit, on real cgroups, in both
//! modes: processes in the cgroup (or below it) are watched, wherever they came from (started
//! inside it, moved in later); processes outside it never are.

use std::os::unix::process::CommandExt as _;

use memory_monitor::cgroup::v2_mount;
use memory_monitor_tests::cgroup::{Cgroup, memory_hierarchy};
use memory_monitor_tests::{Monitor, Target, root_or_skip, unique_name};

const USR1: i32 = libc::SIGUSR1;

/// Starts a target that moves itself into `cgroup` before its program runs: it is born there,
/// as a service's or a container's processes are.
fn spawn_inside(name: &str, cgroup: &Cgroup) -> Target {
    let procs = cgroup.procs();
    Target::spawn_with(name, move |command| {
        // SAFETY: only async-signal-safe calls (open, write, close) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                match written {
                    1 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            });
        }
    })
}

fn start(mode: &str, args: &[&str]) -> Monitor {
    let mut all = vec![
        "--mode", mode, "-i", "100ms", "-v", "-s", "USR1", "--repeat", "never",
    ];
    all.extend_from_slice(args);
    let mut monitor = Monitor::start(&all);
    monitor.expect_log(&["watching", &format!("mode={mode}")]);
    monitor.expect_log(&["checked"]);
    monitor
}

#[test]
fn a_cgroup_selects_its_processes_however_they_got_there() {
    if !root_or_skip("a_cgroup_selects_its_processes_however_they_got_there") {
        return;
    }
    let root = v2_mount().expect("a cgroup v2 hierarchy");
    for mode in ["poll", "ebpf"] {
        let cgroup = Cgroup::create(root, &unique_name("mmc-cg"));
        let mut inside = Target::spawn(&unique_name("mmc-in"));
        cgroup.add(inside.pid());
        let mut outside = Target::spawn(&unique_name("mmc-out"));
        let mut monitor = start(mode, &["-m", "32M", "--cgroup", &cgroup.path()]);

        inside.grow(48);
        assert!(inside.wait_signal(USR1), "{}", monitor.log_text());

        // Moved in once already over the limit.
        let mut moved = Target::spawn(&unique_name("mmc-mv"));
        moved.grow(48);
        cgroup.add(moved.pid());
        assert!(moved.wait_signal(USR1), "{}", monitor.log_text());

        // Born inside: started after the monitor, moved in before its program ran.
        let mut born = spawn_inside(&unique_name("mmc-bn"), &cgroup);
        born.grow(48);
        assert!(born.wait_signal(USR1), "{}", monitor.log_text());

        outside.grow(48);
        // Every breach above has been signalled since; the outsider never is.
        let mut last = spawn_inside(&unique_name("mmc-ls"), &cgroup);
        last.grow(48);
        assert!(last.wait_signal(USR1), "{}", monitor.log_text());
        assert!(outside.signals().is_empty(), "{}", monitor.log_text());
        assert!(monitor.stop().success());
    }
}

#[test]
fn a_name_and_a_cgroup_must_both_match() {
    if !root_or_skip("a_name_and_a_cgroup_must_both_match") {
        return;
    }
    let root = v2_mount().expect("a cgroup v2 hierarchy");
    for mode in ["poll", "ebpf"] {
        let cgroup = Cgroup::create(root, &unique_name("mmc-nc"));
        let name = unique_name("mmc-nm");
        let mut named = spawn_inside(&name, &cgroup);
        let mut other = spawn_inside(&unique_name("mmc-ot"), &cgroup);
        let mut monitor = start(mode, &["-m", "32M", "--cgroup", &cgroup.path(), &name]);
        other.grow(48);
        named.grow(48);
        assert!(named.wait_signal(USR1), "{}", monitor.log_text());
        let mut second = spawn_inside(&format!("{name}b"), &cgroup);
        second.grow(48);
        assert!(second.wait_signal(USR1), "{}", monitor.log_text());
        assert!(other.signals().is_empty(), "{}", monitor.log_text());
        assert!(monitor.stop().success());
    }
}

#[test]
fn a_limit_can_be_a_share_of_the_cgroup_memory_limit() {
    if !root_or_skip("a_limit_can_be_a_share_of_the_cgroup_memory_limit") {
        return;
    }
    let (root, limit_file) = memory_hierarchy().expect("a memory controller");
    for mode in ["poll", "ebpf"] {
        let cgroup = Cgroup::create(&root, &unique_name("mmc-mem"));
        cgroup.set(limit_file, &(64u64 << 20).to_string());
        let name = unique_name("mmc-sh");
        let mut limited = Target::spawn(&name);
        cgroup.add(limited.pid());
        // The same name outside any limited cgroup: half of RAM, far above what it uses.
        let mut unlimited = Target::spawn(&format!("{name}u"));
        let mut monitor = start(mode, &["-m", "50% of cgroup", &name]);
        unlimited.grow(48);
        limited.grow(48);
        assert!(limited.wait_signal(USR1), "{}", monitor.log_text());
        monitor.expect_log(&[
            &format!("pid={}", limited.pid()),
            "over the limit",
            "limit=32.0MiB",
        ]);
        // Its 48 MiB leave the cgroup with it, so the next one fits under the cgroup's limit.
        limited.exit();
        let mut again = Target::spawn(&format!("{name}v"));
        cgroup.add(again.pid());
        again.grow(40);
        assert!(again.wait_signal(USR1), "{}", monitor.log_text());
        assert!(unlimited.signals().is_empty(), "{}", monitor.log_text());
        assert!(monitor.stop().success());
    }
}
