//! `--cgroup` and limits given as a share of a cgroup's memory limit, on real cgroups, in both
//! modes: processes in the cgroup (or below it) are watched, wherever they came from (started
//! inside it, moved in later); processes outside it never are.

use std::os::unix::process::CommandExt as _;

use memory_monitor_tests::cgroup::{Cgroup, memory_hierarchy, spawn_inside, v2_mount};
use memory_monitor_tests::{Monitor, RulesFile, Target, unique_name};

const USR1: i32 = libc::SIGUSR1;

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
#[ignore = "needs root"]
fn a_cgroup_selects_its_processes_however_they_got_there() {
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
#[ignore = "needs root"]
fn a_name_and_a_cgroup_must_both_match() {
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
#[ignore = "needs root"]
fn a_limit_can_be_a_share_of_the_cgroup_memory_limit() {
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

#[test]
#[ignore = "needs root"]
fn a_cgroup_limit_rewritten_later_is_followed() {
    let (root, limit_file) = memory_hierarchy().expect("a memory controller");
    for mode in ["poll", "ebpf"] {
        let cgroup = Cgroup::create(&root, &unique_name("mmc-rw"));
        cgroup.set(limit_file, &(64u64 << 20).to_string());
        let name = unique_name("mmc-rw");
        let mut target = Target::spawn(&name);
        cgroup.add(target.pid());
        let mut monitor = start(mode, &["-m", "50% of cgroup", &name]);
        let pid = format!("pid={}", target.pid());
        target.grow(16);
        // Raised (a resize): the limit follows before the process grows past the old one.
        cgroup.set(limit_file, &(512u64 << 20).to_string());
        monitor.expect_log(&["limit changed", &pid, "limit=256.0MiB"]);
        target.grow(28);
        // Lowered below what it uses now: it is over at once.
        cgroup.set(limit_file, &(80u64 << 20).to_string());
        assert!(target.wait_signal(USR1), "{}", monitor.log_text());
        let breach = monitor.expect_log(&["over the limit", &pid]);
        assert!(breach.contains("limit=40.0MiB"), "{mode}: {breach}");
        assert_eq!(
            monitor.count(&["over the limit", &pid]),
            1,
            "{mode}: {}",
            monitor.log_text()
        );
        assert!(monitor.stop().success());
    }
}

#[test]
#[ignore = "needs root"]
fn a_cgroup_made_later_or_made_again_selects_its_processes_from_a_file_or_the_command_line() {
    let root = v2_mount().expect("a cgroup v2 hierarchy");
    for (mode, from_file) in [
        ("poll", true),
        ("ebpf", true),
        ("poll", false),
        ("ebpf", false),
    ] {
        let name = unique_name("mmc-ag");
        let path = format!("/{name}");
        // A cgroup that does not exist yet is waited for, wherever the rule comes from.
        let rules = RulesFile::new(
            "mmc-ag",
            &format!(
                "[[rule]]\ncgroup = \"{path}\"\nmax-memory = \"32M\"\nsignal = \"USR1\"\nrepeat = \"never\"\n"
            ),
        );
        let mut monitor = match from_file {
            true => Monitor::start_rules(mode, rules.path(), &[]),
            false => start(mode, &["-m", "32M", "--cgroup", &path]),
        };
        monitor.expect_log(&["cgroup_missing", &path, "waited for"]);

        // Made after the monitor started (a service started): watched without a reload.
        let cgroup = Cgroup::create(root, &name);
        monitor.expect_log(&["cgroup_appeared", &path]);
        let mut first = spawn_inside(&unique_name("mmc-a1"), &cgroup);
        first.grow(48);
        assert!(first.wait_signal(USR1), "{}", monitor.log_text());
        first.exit();

        // Removed and made again under the same name (a service restarted): a new cgroup.
        drop(cgroup);
        monitor.expect_count(&["cgroup_missing", &path], 2);
        let cgroup = Cgroup::create(root, &name);
        monitor.expect_count(&["cgroup_appeared", &path], 2);
        let mut second = spawn_inside(&unique_name("mmc-a2"), &cgroup);
        second.grow(48);
        assert!(second.wait_signal(USR1), "{mode}: {}", monitor.log_text());
        assert!(monitor.stop().success());
    }
}

#[test]
#[ignore = "needs root"]
fn in_a_cgroup_namespace_of_its_own_rules_name_cgroups_as_the_host_does() {
    let v2 = v2_mount().expect("a cgroup v2 hierarchy");
    let (memory, limit_file) = memory_hierarchy().expect("a memory controller");
    for mode in ["poll", "ebpf"] {
        // The monitor in a cgroup of its own, made the root of its cgroup namespace (as a
        // container's), sees the target's cgroup as `/../<target>`.
        let monitor_v2 = Cgroup::create(v2, &unique_name("mmc-ns"));
        let monitor_memory =
            (memory != v2).then(|| Cgroup::create(&memory, &unique_name("mmc-nm")));
        // The target's memory limit: in a v1 memory hierarchy of its own, or, where v2 has the
        // memory controller, on a cgroup below the one the rule names. There the parent must
        // hand the controller down (else the child has no `memory.max`), and so may hold no
        // process itself: the target goes into the child alone.
        let target_v2 = Cgroup::create(v2, &unique_name("mmc-nt"));
        let target_memory = match memory != v2 {
            true => Cgroup::create(&memory, &unique_name("mmc-nl")),
            false => {
                target_v2.set("cgroup.subtree_control", "+memory");
                Cgroup::create(target_v2.dir(), "limit")
            }
        };
        target_memory.set(limit_file, &(64u64 << 20).to_string());
        let mut target = Target::spawn(&unique_name("mmc-nx"));
        if memory != v2 {
            target_v2.add(target.pid());
        }
        target_memory.add(target.pid());

        let joins: Vec<_> = std::iter::once(monitor_v2.procs())
            .chain(monitor_memory.as_ref().map(Cgroup::procs))
            .collect();
        let args = [
            "--mode",
            mode,
            "-i",
            "100ms",
            "-v",
            "-s",
            "USR1",
            "--repeat",
            "never",
            "-m",
            "50% of cgroup",
            "--cgroup",
            &target_v2.path(),
        ];
        let mut monitor = Monitor::start_with(&args, move |command| {
            // SAFETY: only async-signal-safe calls (open, write, close, unshare) between fork
            // and exec.
            unsafe {
                command.pre_exec(move || {
                    for procs in &joins {
                        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                        if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                            return Err(std::io::Error::last_os_error());
                        }
                        libc::close(fd);
                    }
                    match libc::unshare(libc::CLONE_NEWCGROUP) {
                        0 => Ok(()),
                        _ => Err(std::io::Error::last_os_error()),
                    }
                });
            }
        });
        monitor.expect_log(&["watching", &format!("mode={mode}")]);
        target.grow(48);
        assert!(target.wait_signal(USR1), "{mode}: {}", monitor.log_text());
        monitor.expect_log(&[
            "over the limit",
            &format!("pid={}", target.pid()),
            "limit=32.0MiB",
        ]);
        assert!(monitor.stop().success());
    }
}

#[test]
#[ignore = "needs root"]
fn a_rules_cgroup_whose_parent_is_removed_and_made_again_selects_its_processes() {
    let root = v2_mount().expect("a cgroup v2 hierarchy");
    for mode in ["poll", "ebpf"] {
        // A service's own cgroup, and one it delegates below it (`Delegate=yes`): restarting
        // the service removes both and makes them again.
        let parent_name = unique_name("mmc-pp");
        let path = format!("/{parent_name}/worker");
        let rules = RulesFile::new(
            "mmc-pp",
            &format!(
                "[[rule]]\ncgroup = \"{path}\"\nmax-memory = \"32M\"\nsignal = \"USR1\"\nrepeat = \"never\"\n"
            ),
        );
        let parent = Cgroup::create(root, &parent_name);
        let child = Cgroup::create(parent.dir(), "worker");
        let mut monitor = Monitor::start_rules(mode, rules.path(), &[]);
        drop(child);
        drop(parent);
        monitor.expect_log(&["cgroup_missing", &path]);
        let parent = Cgroup::create(root, &parent_name);
        let child = Cgroup::create(parent.dir(), "worker");
        monitor.expect_log(&["cgroup_appeared", &path]);
        let mut target = spawn_inside(&unique_name("mmc-pw"), &child);
        target.grow(48);
        assert!(target.wait_signal(USR1), "{mode}: {}", monitor.log_text());
        target.exit();
        assert!(monitor.stop().success());
        drop(child);
    }
}

#[test]
#[ignore = "needs root"]
fn a_process_moved_to_a_cgroup_with_another_limit_is_judged_by_it() {
    let (root, limit_file) = memory_hierarchy().expect("a memory controller");
    for mode in ["poll", "ebpf"] {
        let roomy = Cgroup::create(&root, &unique_name("mmc-ro"));
        roomy.set(limit_file, &(256u64 << 20).to_string());
        let tight = Cgroup::create(&root, &unique_name("mmc-ti"));
        tight.set(limit_file, &(96u64 << 20).to_string());
        let name = unique_name("mmc-mo");
        let mut target = Target::spawn(&name);
        roomy.add(target.pid());
        let mut monitor = start(mode, &["-m", "50% of cgroup", &name]);
        // 60 MiB: under half of 256 MiB, over half of 96 MiB.
        target.grow(56);
        tight.add(target.pid());
        assert!(target.wait_signal(USR1), "{mode}: {}", monitor.log_text());
        let breach = monitor.expect_log(&["over the limit", &format!("pid={}", target.pid())]);
        assert!(breach.contains("limit=48.0MiB"), "{mode}: {breach}");
        assert!(monitor.stop().success());
    }
}
