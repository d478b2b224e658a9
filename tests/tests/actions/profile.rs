//! Profiles on breach, end to end: real targets over their limit, real writers (a directory,
//! a local HTTP server, a local S3-compatible server), and an independent reader of the result
//! (`go tool pprof`).

use std::path::PathBuf;

use memory_monitor_tests::servers::{PutServer, S3Server};
use memory_monitor_tests::shipped::released;
use memory_monitor_tests::{
    Monitor, Target, files_in, kib_field, pprof_default_top, pprof_top,
    pprof_top_entry as top_entry, unique_name,
};

const USR1: i32 = libc::SIGUSR1;

/// Monitor arguments: a 32 MiB limit, SIGUSR1, repeated every 150 ms while over, `rest`.
fn args<'a>(mode: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--mode", mode, "-i", "100ms", "-m", "32M", "-s", "USR1", "--repeat", "150ms",
    ];
    args.extend_from_slice(rest);
    args
}

/// A fresh, empty directory for one test's profiles.
fn empty_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mm-profiles-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The profiles in `dir` (their flame graphs are beside them: tests/tests/flame.rs).
#[test]
fn a_process_that_exits_on_its_signal_still_has_its_profile_in_poll_mode() {
    a_process_that_exits_on_its_signal_still_has_its_profile("poll");
}

#[test]
#[ignore = "needs root"]
fn a_process_that_exits_on_its_signal_still_has_its_profile_in_ebpf_mode() {
    a_process_that_exits_on_its_signal_still_has_its_profile("ebpf");
}

fn a_process_that_exits_on_its_signal_still_has_its_profile(mode: &str) {
    // The usual case: SIGTERM, and the process ends (mm-target does, as a service would). In
    // eBPF mode its growth stacks are being named while it goes.
    let dir = empty_dir(&format!("exits-{mode}"));
    let name = unique_name("mmp-ex");
    let mut target = Target::spawn(&name);
    let dir_arg = dir.display().to_string();
    let mut monitor = Monitor::start(&[
        "--mode",
        mode,
        "-i",
        "100ms",
        "-m",
        "32M",
        "--profile-dir",
        &dir_arg,
        &name,
    ]);
    monitor.expect_log(&["watching"]);
    let pid = format!("pid={}", target.pid());
    // The signal may end it before it can say it grew: what is awaited is the profile.
    target.start_growing_memfd(48);
    monitor.expect_log(&["profile written", &pid]);
    let status = target.wait_exit().expect("the target exits on its SIGTERM");
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{mode}: {status}");
    let files = files_in(&dir, ".pb.gz");
    assert_eq!(files.len(), 1, "{mode}: {files:?}");
    assert!(
        top_entry(&files[0]).contains("/memfd:mm-target-block"),
        "{mode}: {}",
        monitor.log_text()
    );
    assert!(monitor.stop().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_breach_yields_one_profile_naming_the_largest_mapping_in_poll_mode() {
    a_breach_yields_one_profile_naming_the_largest_mapping("poll");
}

#[test]
#[ignore = "needs root"]
fn a_breach_yields_one_profile_naming_the_largest_mapping_in_ebpf_mode() {
    a_breach_yields_one_profile_naming_the_largest_mapping("ebpf");
}

fn a_breach_yields_one_profile_naming_the_largest_mapping(mode: &str) {
    let dir = empty_dir(&format!("largest-{mode}"));
    let name = unique_name("mmp-prof");
    let mut target = Target::spawn(&name);
    target.grow_memfd(48);
    let dir_arg = dir.display().to_string();
    let mut monitor = Monitor::start(&args(mode, &["--profile-dir", &dir_arg, &name]));
    assert!(target.wait_signal(USR1), "{mode}: {}", monitor.log_text());
    let pid = format!("pid={}", target.pid());
    monitor.expect_log(&["profile written", &pid]);
    // Repeats while the process stays over: still one breach, so still one profile.
    monitor.expect_count(&["still over the limit", &pid], 3);
    let files = files_in(&dir, ".pb.gz");
    assert_eq!(files.len(), 1, "{mode}: {files:?}");
    let file_name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(
        file_name.contains(&format!("_{name}_{}_", target.pid())) && file_name.ends_with(".pb.gz"),
        "{file_name}"
    );
    let top = top_entry(&files[0]);
    assert!(
        top.contains("/memfd:mm-target-block"),
        "{mode}: top entry: {top}"
    );
    assert_eq!(monitor.count(&["profile written"]), 1);
    assert!(monitor.stop().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failing_writer_is_logged_once_per_breach_and_the_signal_still_goes() {
    // A directory that cannot be made, and an HTTP endpoint where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/profiles", closed.local_addr().unwrap());
    drop(closed);
    for destination in ["dir:/proc/1/no-such-dir".to_string(), dead_url] {
        let name = unique_name("mmp-fail");
        let mut target = Target::spawn(&name);
        target.grow(48);
        // The HTTP writer is the release build's (the object-store feature).
        let mut monitor = Monitor::start_with(
            &args("poll", &["--profile-to", &destination, &name]),
            released,
        );
        assert!(
            target.wait_signal(USR1),
            "{destination}: {}",
            monitor.log_text()
        );
        let pid = format!("pid={}", target.pid());
        monitor.expect_log(&[r#"event="profile_failed""#, &pid]);
        // The monitor goes on signalling, and the failure is not logged again for this breach.
        monitor.expect_more("still over the limit", 3);
        assert_eq!(
            monitor.count(&[r#"event="profile_failed""#]),
            1,
            "{}",
            monitor.log_text()
        );
        assert!(monitor.stop().success());
    }
}

#[test]
fn profiles_are_put_over_http() {
    let server = PutServer::start();
    let name = unique_name("mmp-http");
    let mut target = Target::spawn(&name);
    target.grow_memfd(48);
    let url = format!("{}/profiles", server.url());
    // The HTTP writer is the release build's (the object-store feature).
    let mut monitor = Monitor::start_with(&args("poll", &["--profile-to", &url, &name]), released);
    assert!(target.wait_signal(USR1), "{}", monitor.log_text());
    monitor.expect_log(&["profile written", &format!("pid={}", target.pid())]);
    let mut received = server.received();
    received.retain(|(path, _)| path.ends_with(".pb.gz"));
    assert_eq!(received.len(), 1, "{received:?}");
    let (path, body) = &received[0];
    assert!(
        path.starts_with("/profiles/") && path.contains(&name),
        "{path}"
    );
    let file = std::env::temp_dir().join(format!("mm-http-{}.pb.gz", std::process::id()));
    std::fs::write(&file, body).unwrap();
    assert!(top_entry(&file).contains("/memfd:mm-target-block"));
    std::fs::remove_file(&file).unwrap();
    assert!(monitor.stop().success());
}

/// The attack on secrets in URLs: credentials and a token in an HTTP destination are in no
/// log line (start, profile, failure) and not in `--check-config`'s output; a token kept in
/// the token file reaches the server as a bearer token.
#[test]
fn secrets_of_a_destination_url_are_never_logged_and_a_token_file_is_sent() {
    let server = PutServer::start();
    let name = unique_name("mmp-secret");
    let mut target = Target::spawn(&name);
    target.grow_memfd(48);
    let url = server.url().replace("http://", "http://user:p4ss@") + "/profiles";
    let token = std::env::temp_dir().join(unique_name("mmp-token"));
    std::fs::write(&token, "t0ken\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/p?token=s3cret", closed.local_addr().unwrap());
    drop(closed);
    let mut logs = String::new();
    for (destination, pid) in [(&url, target.pid()), (&dead, 0)] {
        let check = Monitor::start_with(
            &args(
                "poll",
                &["--profile-to", destination, "--check-config", &name],
            ),
            released,
        )
        .log_text();
        logs += &check;
        let mut monitor = Monitor::start_with(
            &args("poll", &["--profile-to", destination, &name]),
            |command| {
                released(command);
                command.env("MEMORY_MONITOR_PROFILE_TOKEN_FILE", &token);
            },
        );
        match pid {
            0 => {
                let mut other = Target::spawn(&format!("{name}d"));
                other.grow(48);
                let pid = format!("pid={}", other.pid());
                monitor.expect_log(&[r#"event="profile_failed""#, &pid]);
            }
            pid => {
                monitor.expect_log(&["profile written", &format!("pid={pid}")]);
            }
        }
        logs += &monitor.log_text();
        assert!(monitor.stop().success());
    }
    for secret in ["p4ss", "s3cret"] {
        assert!(!logs.contains(secret), "{secret} in:\n{logs}");
    }
    assert!(logs.contains("user:") || logs.contains("***@"), "{logs}");
    let authorizations = server.authorizations();
    assert!(!authorizations.is_empty());
    for authorization in authorizations {
        assert_eq!(authorization.as_deref(), Some("Bearer t0ken"));
    }
    std::fs::remove_file(&token).unwrap();
}

#[test]
fn profiles_go_to_s3_and_a_stopped_server_is_a_logged_failure() {
    let mut server = S3Server::start();
    server.create_bucket("profiles");
    let name = unique_name("mmp-s3");
    let mut target = Target::spawn(&name);
    target.grow_memfd(48);
    let env = server.env();
    let mut monitor = Monitor::start_with(
        &args("poll", &["--profile-to", "s3://profiles/breaches", &name]),
        // The S3 writer is the release build's (the object-store feature).
        |command| {
            released(command);
            command.envs(env);
        },
    );
    assert!(target.wait_signal(USR1), "{}", monitor.log_text());
    monitor.expect_log(&["profile written", &format!("pid={}", target.pid())]);
    let mut keys = server.list("profiles");
    keys.retain(|key| key.ends_with(".pb.gz"));
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with("breaches/") && keys[0].contains(&name),
        "{keys:?}"
    );
    let file = std::env::temp_dir().join(format!("mm-s3-{}.pb.gz", std::process::id()));
    std::fs::write(&file, server.get("profiles", &keys[0])).unwrap();
    assert!(top_entry(&file).contains("/memfd:mm-target-block"));
    std::fs::remove_file(&file).unwrap();

    // With the server gone, a new breach is still signalled; the lost profile is logged.
    server.stop();
    let mut second = Target::spawn(&format!("{name}b"));
    second.grow(48);
    assert!(second.wait_signal(USR1), "{}", monitor.log_text());
    monitor.expect_log(&[
        r#"event="profile_failed""#,
        &format!("pid={}", second.pid()),
    ]);
    assert_eq!(monitor.count(&["profile written"]), 1);
    assert!(monitor.stop().success());
}

/// The monitor in eBPF mode, attached as `attach` says, over 64 MiB (SIGUSR1, once), with
/// profiles in `dir`, for processes named `name`: attached, and told by its first look at
/// /proc to follow them.
fn growth_monitor(attach: &str, dir: &str, name: &str) -> Monitor {
    let mut monitor = Monitor::start(&[
        "--mode",
        "ebpf",
        "--attach",
        attach,
        "-m",
        "64M",
        "-s",
        "USR1",
        "--repeat",
        "never",
        "--profile-dir",
        dir,
        "-v",
        name,
    ]);
    monitor.expect_log(&["watching", "mode=ebpf"]);
    monitor.expect_log(&["checked"]);
    monitor
}

#[test]
#[ignore = "needs root"]
fn in_ebpf_mode_the_profile_names_the_code_that_grew_the_process() {
    for attach in ["tracepoint", "tp-btf"] {
        let dir = empty_dir(&format!("growth-{attach}"));
        let name = unique_name("mmp-grow");
        let mut target = Target::spawn(&name);
        target.grow(16);
        let dir_arg = dir.display().to_string();
        let mut monitor = growth_monitor(attach, &dir_arg, &name);
        // Through --profile-at (80 %: 51.2 MiB) and the limit, in mm-target's page toucher.
        target.grow(64);
        assert!(target.wait_signal(USR1), "{attach}: {}", monitor.log_text());
        monitor.expect_log(&["profile written", &format!("pid={}", target.pid())]);
        let files = files_in(&dir, ".pb.gz");
        assert_eq!(files.len(), 1, "{attach}: {files:?}");
        let top = pprof_top(&files[0], "growth");
        assert!(
            top.contains("touch_every_page"),
            "{attach}: growth profile:\n{top}"
        );
        // The resident (mapping) view is still the default: what pprof shows unasked.
        assert_eq!(
            pprof_default_top(&files[0]),
            pprof_top(&files[0], "rss"),
            "{attach}: growth profile:\n{top}"
        );
        assert!(monitor.stop().success());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Mounts a tmpfs on `dir` (in this process's mount namespace), unmounted when dropped.
struct Tmpfs(std::ffi::CString);

impl Tmpfs {
    fn on(dir: &std::path::Path) -> Tmpfs {
        let dir = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        // SAFETY: NUL-terminated strings; a fresh tmpfs on a directory of the test's.
        let mounted = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                dir.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        assert_eq!(mounted, 0, "{}", std::io::Error::last_os_error());
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // SAFETY: unmounting what `on` mounted.
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A FIFO at `path`, as the watched user can make one.
fn fifo_at(path: &std::path::Path) {
    let path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o666) }, 0);
}

/// The attack on the symbolizer: the watched process's binary is, in the monitor's mount
/// namespace, a FIFO at the same path (the process runs in a mount namespace of its own, as in
/// a container), and its perf map is a FIFO too. Opened as before (blocking, in the monitor's
/// namespace), either held the profiler for good. Both breaches are signalled and profiled,
/// and the growth stacks are named from the process's own binary, through its own root.
#[test]
#[ignore = "needs root"]
fn fifos_in_place_of_a_process_files_hold_up_no_profile() {
    let base = std::env::temp_dir().join(unique_name("mmp-fifo"));
    let bin_dir = base.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let program = bin_dir.join("mm-target-copy");
    std::fs::copy(memory_monitor_tests::bin("mm-target"), &program).unwrap();
    let dir = empty_dir("fifos");
    let name = unique_name("mmp-fifo");
    let mut target = Target::spawn_from(&program, &name, |command| {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: between fork and exec: system calls only.
        unsafe {
            command.pre_exec(|| {
                let private = libc::MS_REC | libc::MS_PRIVATE;
                let ok = libc::unshare(libc::CLONE_NEWNS) == 0
                    && libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        private,
                        std::ptr::null(),
                    ) == 0;
                match ok {
                    true => Ok(()),
                    false => Err(std::io::Error::last_os_error()),
                }
            });
        }
    });
    // In the monitor's namespace only: the binary's path is now a FIFO.
    let hidden = Tmpfs::on(&bin_dir);
    fifo_at(&program);
    let perf_map = std::path::PathBuf::from(format!("/tmp/perf-{}.map", target.pid()));
    let _ = std::fs::remove_file(&perf_map);
    fifo_at(&perf_map);
    target.grow(16);
    let dir_arg = dir.display().to_string();
    let mut monitor = growth_monitor("tracepoint", &dir_arg, &name);
    let pid = format!("pid={}", target.pid());
    for breach in 1..=2 {
        target.grow(64);
        let signalled = target.wait_signals(USR1, breach);
        assert!(signalled, "breach {breach}: {}", monitor.log_text());
        monitor.expect_count(&["profile written", &pid], breach);
        target.shrink(64);
    }
    let files = files_in(&dir, ".pb.gz");
    assert_eq!(files.len(), 2, "{files:?}");
    for file in &files {
        let top = pprof_top(file, "growth");
        assert!(top.contains("touch_every_page"), "growth profile:\n{top}");
    }
    assert!(monitor.stop().success());
    drop(target);
    std::fs::remove_file(&perf_map).unwrap();
    drop(hidden);
    std::fs::remove_dir_all(&base).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The most the monitor's resident memory may reach while it profiles a process, whatever
/// that process maps: the DaemonSet's 128 MiB limit holds it with room.
const PROFILING_BUDGET: u64 = 64 << 20;

/// A file at a path of about 3.8 KiB (15 directories of 250 characters), under `dir`.
fn long_path_file(dir: &std::path::Path) -> PathBuf {
    let mut path = dir.to_owned();
    for _ in 0..15 {
        path.push("d".repeat(250));
    }
    std::fs::create_dir_all(&path).unwrap();
    path.push("f");
    std::fs::write(&path, [1u8; 4096]).unwrap();
    path
}

/// The peak of a process's resident memory since it was last reset (`VmHWM`), in bytes.
fn peak_rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    kib_field(&status, "VmHWM")
}

/// The attack: a process with 65,000 mappings of one 3.8 KiB path (a `smaps` of ~300 MB) goes
/// over its limit. It is signalled and profiled, its long path cut and said to be, while the
/// monitor's peak RSS, from just before the breach, stays within [`PROFILING_BUDGET`].
#[test]
fn a_process_with_very_many_long_mappings_is_profiled_within_the_monitor_budget() {
    let dir = empty_dir("many-mappings");
    let files = std::env::temp_dir().join(unique_name("mm-long"));
    let long = long_path_file(&files);
    let name = unique_name("mmp-many");
    let mut target = Target::spawn(&name);
    let dir_arg = dir.display().to_string();
    let mut monitor = Monitor::start(&[
        "--mode",
        "poll",
        "-i",
        "100ms",
        "-m",
        "320M",
        "-s",
        "USR1",
        "--repeat",
        "never",
        "--profile-dir",
        &dir_arg,
        &name,
    ]);
    monitor.expect_log(&["watching"]);
    // 65,000 pages of the file held through as many mappings: 254 MiB, under the limit.
    target.map_file(65_000, &long);
    // The peak counts from here (5 resets it).
    std::fs::write(format!("/proc/{}/clear_refs", monitor.pid()), "5").unwrap();
    target.start_growing(96);
    assert!(target.wait_signal(USR1), "{}", monitor.log_text());
    monitor.expect_log(&["profile written", &format!("pid={}", target.pid())]);
    let peak = peak_rss(monitor.pid());
    println!("the monitor's peak RSS while profiling: {} MiB", peak >> 20);
    let profiles = files_in(&dir, ".pb.gz");
    assert_eq!(profiles.len(), 1, "{profiles:?}");
    let top = top_entry(&profiles[0]);
    assert!(top.contains(&"d".repeat(200)), "top entry: {top}");
    // The profile's comments are among its strings.
    let raw = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&profiles[0])
        .output()
        .unwrap()
        .stdout;
    let note = b"65000 mappings' paths cut to 256 bytes";
    assert!(
        raw.windows(note.len()).any(|w| w == note),
        "no note of the cut paths"
    );
    assert!(monitor.stop().success());
    assert!(
        peak <= PROFILING_BUDGET,
        "the monitor's RSS reached {} MiB profiling the process (budget {} MiB)",
        peak >> 20,
        PROFILING_BUDGET >> 20
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&files).unwrap();
}
