//! Which container and pod a breaching process is in, on real cgroups named as each container
//! runtime names them (systemd driver: containerd, CRI-O, Docker; cgroupfs driver: Kubernetes
//! and Docker), in both modes: the breach line, the hook's environment and the profile's
//! comments carry the container ID and the pod UID.
//!
//! The runtimes' cgroups are made under a cgroup of the test's own, and the monitor runs in a
//! cgroup namespace rooted there: it sees them where the runtimes put them (`/kubepods.slice`,
//! `/docker`, …), as it would on a node. Cgroups a user could make in a subtree of their own,
//! named after someone else's container, must name no container.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;

use memory_monitor_tests::cgroup::{Cgroup, v2_mount};
use memory_monitor_tests::{Monitor, Target, unique_name, usr1_over_32m, wait_until};

const USR1: i32 = libc::SIGUSR1;

/// One runtime's layout: the cgroup path below the test's own directory, and the container
/// ID and pod UID the monitor must find in it.
struct Layout {
    label: &'static str,
    path: String,
    container: String,
    pod: Option<String>,
}

/// Every layout, with IDs unique to this run (64 hex digits; a UUID).
fn layouts() -> Vec<Layout> {
    let run = std::process::id();
    let id = |n: u32| format!("{run:08x}{n:056x}");
    let uid = |n: u32| format!("{run:08x}-0000-4000-8000-{n:012x}");
    let systemd_pod = |n: u32| {
        format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
            uid(n).replace('-', "_")
        )
    };
    vec![
        Layout {
            label: "containerd (systemd)",
            path: format!("{}/cri-containerd-{}.scope", systemd_pod(1), id(1)),
            container: id(1),
            pod: Some(uid(1)),
        },
        Layout {
            label: "CRI-O (systemd)",
            path: format!("{}/crio-{}.scope", systemd_pod(2), id(2)),
            container: id(2),
            pod: Some(uid(2)),
        },
        Layout {
            label: "Docker (systemd)",
            path: format!("system.slice/docker-{}.scope", id(3)),
            container: id(3),
            pod: None,
        },
        Layout {
            label: "Kubernetes (cgroupfs)",
            path: format!("kubepods/burstable/pod{}/{}", uid(4), id(4)),
            container: id(4),
            pod: Some(uid(4)),
        },
        Layout {
            label: "Docker (cgroupfs)",
            path: format!("docker/{}", id(5)),
            container: id(5),
            pod: None,
        },
    ]
}

/// Lets a command (the monitor) start in `top`, in a cgroup namespace rooted there.
fn in_namespace_of(top: &Cgroup) -> impl FnOnce(&mut Command) {
    let procs = top.procs();
    move |command| {
        // SAFETY: between fork and exec: system calls only, on a path made beforehand.
        unsafe {
            command.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                // "0": the writing process itself.
                let moved = fd >= 0 && libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                if fd >= 0 {
                    libc::close(fd);
                }
                match moved && libc::unshare(libc::CLONE_NEWCGROUP) == 0 {
                    true => Ok(()),
                    false => Err(std::io::Error::last_os_error()),
                }
            });
        }
    }
}

/// Makes every directory of `path` under `base` in `root` not made yet (outermost first);
/// dropped innermost first. The first is the innermost: the container's.
fn nested(root: &Path, base: &str, path: &str) -> Vec<Cgroup> {
    let mut made = Vec::new();
    let mut at = base.to_string();
    for part in path.split('/') {
        at = format!("{at}/{part}");
        // Parents shared with an earlier layout (`kubepods.slice`) are that layout's.
        if !root.join(&at).exists() {
            made.push(Cgroup::create(root, &at));
        }
    }
    made.reverse();
    made
}

/// The files in `dir` whose names end with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect()
}

/// `go tool pprof -comments` of `profile`.
fn pprof_comments(profile: &Path) -> String {
    let output = std::process::Command::new("go")
        .args(["tool", "pprof", "-comments"])
        .arg(profile)
        .output()
        .expect("go tool pprof");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
#[ignore = "needs root"]
fn breaches_name_the_container_and_pod_in_each_runtimes_layout() {
    let root = v2_mount().expect("a cgroup v2 hierarchy");
    for mode in ["poll", "ebpf"] {
        let top = unique_name("mmi-cg");
        let top_cgroup = Cgroup::create(root, &top);
        let layouts = layouts();
        let mut cgroups = Vec::new();
        let prefix = unique_name("mmi");
        let mut targets = Vec::new();
        for (n, layout) in layouts.iter().enumerate() {
            let made = nested(root, &top, &layout.path);
            let target = Target::spawn(&format!("{prefix}{n}"));
            // In its container before the monitor first sees it.
            made[0].add(target.pid());
            cgroups.push(made);
            targets.push(target);
        }
        // Outside any container: no container, no pod.
        let mut bare = Target::spawn(&format!("{prefix}9"));
        let dir = std::env::temp_dir().join(unique_name("mmi-out"));
        std::fs::create_dir_all(&dir).unwrap();
        let profiles = dir.join("profiles");
        let hook = format!(
            "echo \"$MM_CONTAINER_ID:$MM_POD_UID\" > {0}/.$MM_PID && mv {0}/.$MM_PID {0}/$MM_PID.env",
            dir.display()
        );
        let (profiles_arg, prefix_arg) = (profiles.display().to_string(), prefix.clone());
        let mut monitor = Monitor::start_with(
            &usr1_over_32m(
                mode,
                &["--exec", &hook, "--profile-dir", &profiles_arg, &prefix_arg],
            ),
            in_namespace_of(&top_cgroup),
        );
        monitor.expect_log(&["watching", &format!("mode={mode}")]);
        for (target, layout) in targets.iter_mut().zip(&layouts) {
            target.grow(48);
            assert!(
                target.wait_signal(USR1),
                "{mode} {}: {}",
                layout.label,
                monitor.log_text()
            );
            let pid = format!("pid={}", target.pid());
            let line = monitor.expect_log(&["over the limit", &pid]);
            let container = format!("container_id=\"{}\"", layout.container);
            assert!(line.contains(&container), "{mode} {}: {line}", layout.label);
            match &layout.pod {
                Some(pod) => assert!(
                    line.contains(&format!("pod_uid=\"{pod}\"")),
                    "{mode} {}: {line}",
                    layout.label
                ),
                None => assert!(
                    !line.contains("pod_uid="),
                    "{mode} {}: {line}",
                    layout.label
                ),
            }
            let env = dir.join(format!("{}.env", target.pid()));
            assert!(
                wait_until(|| env.exists()),
                "{mode} {}: {}",
                layout.label,
                monitor.log_text()
            );
            let expected = format!(
                "{}:{}\n",
                layout.container,
                layout.pod.clone().unwrap_or_default()
            );
            assert_eq!(
                std::fs::read_to_string(&env).unwrap(),
                expected,
                "{mode} {}",
                layout.label
            );
            monitor.expect_log(&["profile written", &pid]);
            let profile = files_ending(&profiles, ".pb.gz")
                .into_iter()
                .find(|p| p.to_string_lossy().contains(&format!("_{}_", target.pid())))
                .expect("the breach's profile");
            let comments = pprof_comments(&profile);
            assert!(
                comments.contains(&format!("container_id: {}", layout.container)),
                "{mode} {}: {comments}",
                layout.label
            );
            if let Some(pod) = &layout.pod {
                assert!(
                    comments.contains(&format!("pod_uid: {pod}")),
                    "{mode} {}: {comments}",
                    layout.label
                );
            }
        }
        bare.grow(48);
        assert!(bare.wait_signal(USR1), "{mode}: {}", monitor.log_text());
        let line = monitor.expect_log(&["over the limit", &format!("pid={}", bare.pid())]);
        assert!(
            !line.contains("container_id=") && !line.contains("pod_uid="),
            "{mode}: {line}"
        );
        let env = dir.join(format!("{}.env", bare.pid()));
        assert!(
            wait_until(|| env.exists()),
            "{mode}: {}",
            monitor.log_text()
        );
        assert_eq!(std::fs::read_to_string(&env).unwrap(), ":\n");
        assert!(monitor.stop().success());
        drop(targets);
        drop(cgroups);
        drop(top_cgroup);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The attack: a user with a subtree of their own (`user@UID.service`) names cgroups in it
/// after someone else's container and pod, and a container names one below its own after
/// another. No breach in them is taken for the other workload's.
#[test]
#[ignore = "needs root"]
fn cgroups_named_after_other_containers_outside_the_runtimes_roots_name_none() {
    let root = v2_mount().expect("a cgroup v2 hierarchy");
    let run = std::process::id();
    let victim = format!("{run:08x}{:056x}", 7);
    let victim_pod = format!("{run:08x}-0000-4000-8000-{:012x}", 7);
    let own = format!("{run:08x}{:056x}", 8);
    let user = "user.slice/user-1000.slice/user@1000.service";
    let spoofs = [
        (
            format!("{user}/app.slice/cri-containerd-{victim}.scope"),
            None,
        ),
        (
            format!(
                "{user}/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{victim}.scope",
                victim_pod.replace('-', "_")
            ),
            None,
        ),
        (format!("{user}/docker/{victim}"), None),
        // Below a container's own cgroup: it is still that container.
        (
            format!("system.slice/docker-{own}.scope/docker-{victim}.scope"),
            Some(own.clone()),
        ),
    ];
    let top = unique_name("mmi-spoof");
    let top_cgroup = Cgroup::create(root, &top);
    let prefix = unique_name("mmi-s");
    let mut made = Vec::new();
    let mut targets = Vec::new();
    for (n, (path, _)) in spoofs.iter().enumerate() {
        let cgroups = nested(root, &top, path);
        let target = Target::spawn(&format!("{prefix}{n}"));
        cgroups[0].add(target.pid());
        made.push(cgroups);
        targets.push(target);
    }
    let mut monitor = Monitor::start_with(
        &usr1_over_32m("poll", &[&prefix]),
        in_namespace_of(&top_cgroup),
    );
    monitor.expect_log(&["watching"]);
    for (target, (path, container)) in targets.iter_mut().zip(&spoofs) {
        target.grow(48);
        assert!(target.wait_signal(USR1), "{path}: {}", monitor.log_text());
        let line = monitor.expect_log(&["over the limit", &format!("pid={}", target.pid())]);
        assert!(!line.contains(&victim), "{path}: {line}");
        assert!(!line.contains("pod_uid="), "{path}: {line}");
        match container {
            Some(own) => assert!(line.contains(&format!("container_id=\"{own}\"")), "{line}"),
            None => assert!(!line.contains("container_id="), "{path}: {line}"),
        }
    }
    assert!(monitor.stop().success());
    drop(targets);
    drop(made);
    drop(top_cgroup);
}

#[test]
#[ignore = "needs root"]
fn list_shows_the_container_and_pod_of_each_process() {
    let root = v2_mount().expect("a cgroup v2 hierarchy");
    let top = unique_name("mmi-lcg");
    let top_cgroup = Cgroup::create(root, &top);
    let layouts = layouts();
    let layout = &layouts[0];
    let made = nested(root, &top, &layout.path);
    let prefix = unique_name("mmi-l");
    let inside = Target::spawn(&format!("{prefix}c"));
    made[0].add(inside.pid());
    let outside = Target::spawn(&format!("{prefix}o"));
    let list = |format: &str| {
        let mut command = Command::new(memory_monitor_tests::bin("memory-monitor"));
        command
            .args(["--list", "--log-format", format, "-m", "1G", &prefix])
            .stdin(std::process::Stdio::null());
        in_namespace_of(&top_cgroup)(&mut command);
        let output = command.output().expect("run memory-monitor");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let table = list("text");
    let row_of = |pid: i32| -> Vec<String> {
        table
            .lines()
            .map(|line| {
                line.split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .find(|row| row.get(1) == Some(&pid.to_string()))
            .unwrap_or_else(|| panic!("no row for {pid}: {table}"))
    };
    assert_eq!(row_of(inside.pid())[3], layout.container[..12], "{table}");
    assert_eq!(row_of(outside.pid())[3], "-", "{table}");
    let json = list("json");
    let line = json
        .lines()
        .find(|line| line.contains(&format!("\"pid\":{}", inside.pid())))
        .unwrap_or_else(|| panic!("{json}"));
    assert!(
        line.contains(&format!("\"container_id\":\"{}\"", layout.container)),
        "{json}"
    );
    let pod = layout.pod.as_deref().expect("a pod");
    assert!(line.contains(&format!("\"pod_uid\":\"{pod}\"")), "{json}");
}
