//! Which processes a rule selects beyond their name, in both modes, on real processes: by the
//! user they run as (`--user`, `user`), less what it leaves out (`exclude-name`,
//! `exclude-regex`, `exclude-user`, `exclude-cgroup`), by a regular expression on the whole
//! command line (`--match cmdline-regex`); the uid and user in every breach line, JSON event
//! and hook; `--list`; and bad values refused with one line.
//!
//! A process left out is made to go over its limit *before* the one the rule selects, so the
//! signal the selected one gets proves the monitor looked at both.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Output, Stdio};

use memory_monitor_tests::cgroup::{Cgroup, v2_mount};
use memory_monitor_tests::{Monitor, RulesFile, Target, bin, unique_name, wait_until};

const USR1: i32 = libc::SIGUSR1;
/// `nobody`, whom the targets that run as another user run as.
const NOBODY: u32 = 65534;

/// Starts the monitor in `mode` with `args` after the test breach's (32 MiB, SIGUSR1 once per
/// breach, polled every 100 ms), and waits until start-up has looked at every process.
fn start(mode: &str, args: &[&str]) -> Monitor {
    let mut all = vec![
        "--mode", mode, "-i", "100ms", "-v", "-m", "32M", "-s", "USR1", "--repeat", "never",
    ];
    all.extend_from_slice(args);
    let mut monitor = Monitor::start(&all);
    // The start line, in text (`mode=poll`) or JSON (`"mode":"poll"`).
    monitor.expect_log(&["watching", "mode", mode]);
    monitor.expect_log(&["checked"]);
    monitor
}

/// A target named `name` running as `nobody`.
fn spawn_as_nobody(name: &str) -> Target {
    Target::spawn_with(name, |command| {
        command.uid(NOBODY).gid(NOBODY);
    })
}

/// The name of `nobody` on this machine (as `/etc/passwd` has it).
fn nobody_name() -> String {
    user_name(NOBODY).expect("a user with uid 65534 in /etc/passwd")
}

/// The name `/etc/passwd` gives `uid`.
fn user_name(uid: u32) -> Option<String> {
    let wanted = uid.to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let uid = fields.nth(1)?;
        (uid == wanted).then(|| name.to_string())
    })
}

/// Runs `memory-monitor args` to its end.
fn run(args: &[&str]) -> Output {
    Command::new(bin("memory-monitor"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run memory-monitor")
}

#[test]
#[ignore = "needs root"]
fn a_rule_by_user_signals_that_users_processes_only_and_says_whose_they_are() {
    let nobody = nobody_name();
    for (mode, format) in [
        ("poll", "text"),
        ("poll", "json"),
        ("ebpf", "text"),
        ("ebpf", "json"),
    ] {
        let dir = std::env::temp_dir().join(unique_name("mms-hook"));
        std::fs::create_dir_all(&dir).unwrap();
        let hook = format!(
            "echo \"$MM_PID $MM_UID $MM_USER\" > {0}/.env && mv {0}/.env {0}/env",
            dir.display()
        );
        let prefix = unique_name("mms-u");
        let mut mine = Target::spawn(&format!("{prefix}r"));
        let mut theirs = spawn_as_nobody(&format!("{prefix}n"));
        let mut monitor = start(
            mode,
            &[
                "--log-format",
                format,
                "--user",
                &nobody,
                "--exec",
                &hook,
                &prefix,
            ],
        );
        // Root's goes over first: had the rule taken it, it would be signalled first.
        mine.grow(48);
        theirs.grow(48);
        assert!(theirs.wait_signal(USR1), "{}", monitor.log_text());
        let pid = theirs.pid();
        match format {
            "json" => monitor.expect_log(&[
                "\"event\":\"breach\"",
                &format!("\"pid\":{pid}"),
                &format!("\"uid\":{NOBODY}"),
                &format!("\"user\":\"{nobody}\""),
            ]),
            _ => monitor.expect_log(&[
                "event=\"breach\"",
                &format!("pid={pid} "),
                &format!("uid={NOBODY} user={nobody} "),
            ]),
        };
        let env = dir.join("env");
        assert!(wait_until(|| env.exists()), "{}", monitor.log_text());
        assert_eq!(
            std::fs::read_to_string(&env).unwrap().trim(),
            format!("{pid} {NOBODY} {nobody}")
        );
        // Root's is never signalled: not by the time the monitor has handled what came after
        // it (the other's breach, or in poll mode a whole cycle begun after both grew), and not
        // by the time it has exited.
        monitor.expect_caught_up(mode);
        let log = monitor.log_text();
        assert!(monitor.stop().success());
        assert!(mine.signals().is_empty(), "{log}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
#[ignore = "needs root"]
fn a_process_that_becomes_the_rules_user_after_it_started_is_watched() {
    // A service's master runs as root, which the rule does not select; its worker drops to
    // the rule's user after it started, with no exec or rename to look at it again by.
    for mode in ["poll", "ebpf"] {
        let prefix = unique_name("mms-w");
        let mut worker = Target::spawn(&format!("{prefix}w"));
        let mut monitor = start(mode, &["--user", &NOBODY.to_string(), &prefix]);
        worker.become_user(NOBODY);
        worker.grow(48);
        assert!(worker.wait_signal(USR1), "{mode}: {}", monitor.log_text());
        monitor.expect_log(&[
            "event=\"breach\"",
            &format!("pid={} ", worker.pid()),
            &format!("uid={NOBODY} "),
        ]);
        assert!(monitor.stop().success());
    }
}

#[test]
#[ignore = "needs root"]
fn a_watched_process_that_becomes_a_left_out_user_is_no_longer_watched() {
    for mode in ["poll", "ebpf"] {
        let prefix = unique_name("mms-d");
        let mut target = Target::spawn(&format!("{prefix}a"));
        let mut monitor = start(mode, &["--exclude-user", &NOBODY.to_string(), &prefix]);
        target.become_user(NOBODY);
        monitor.expect_log(&["no longer watched", &format!("pid={}", target.pid())]);
        let mut selected = Target::spawn(&format!("{prefix}b"));
        target.grow(48);
        selected.grow(48);
        assert!(selected.wait_signal(USR1), "{mode}: {}", monitor.log_text());
        monitor.expect_caught_up(mode);
        assert!(
            target.signals().is_empty(),
            "{mode}: {}",
            monitor.log_text()
        );
        assert!(monitor.stop().success());
    }
}

#[test]
#[ignore = "needs root"]
fn what_a_rule_leaves_out_is_never_signalled_while_what_it_selects_is() {
    let root = v2_mount().expect("a cgroup v2 hierarchy");
    for mode in ["poll", "ebpf"] {
        let prefix = unique_name("mms-x");
        let cgroup = Cgroup::create(root, &unique_name("mms-cg"));
        let file = RulesFile::new(
            "mms-x",
            &format!(
                "[[rule]]\nname = \"web\"\nprefix = \"{prefix}\"\nmax-memory = \"32M\"\nsignal = \"USR1\"\nrepeat = \"never\"\n\
                 exclude-name = \"{prefix}n\"\nexclude-regex = [\"^{prefix}r[0-9]$\"]\n\
                 exclude-user = {NOBODY}\nexclude-cgroup = \"{}\"\n",
                cgroup.path()
            ),
        );
        let by_cgroup = Target::spawn(&format!("{prefix}c"));
        cgroup.add(by_cgroup.pid());
        let mut left_out = [
            Target::spawn(&format!("{prefix}n")),
            Target::spawn(&format!("{prefix}r7")),
            spawn_as_nobody(&format!("{prefix}u")),
            by_cgroup,
        ];
        let mut selected = Target::spawn(&format!("{prefix}ok"));
        let mut monitor = Monitor::start_rules(mode, file.path(), &[]);
        for target in &mut left_out {
            target.grow(48);
        }
        selected.grow(48);
        assert!(selected.wait_signal(USR1), "{}", monitor.log_text());
        monitor.expect_log(&[&format!("pid={}", selected.pid()), "over the limit"]);
        monitor.expect_caught_up(mode);
        for target in &mut left_out {
            assert!(target.signals().is_empty(), "{}", monitor.log_text());
        }
        // Not even watched: none of them is named in the log.
        let log = monitor.log_text();
        for target in &left_out {
            assert!(!log.contains(&format!("pid={} ", target.pid())), "{log}");
        }
        assert!(monitor.stop().success());
    }
}

#[test]
#[ignore = "needs root"]
fn a_process_that_execs_into_a_left_out_name_is_no_longer_watched() {
    // eBPF mode decides at exec: the kernel side asks instead of watching, so a name the
    // rule leaves out is never followed there.
    for mode in ["poll", "ebpf"] {
        let prefix = unique_name("mms-e");
        let left_out = format!("{prefix}n");
        let mut target = Target::spawn(&format!("{prefix}a"));
        let mut monitor = start(mode, &["--exclude-name", &left_out, &prefix]);
        target.exec(&left_out);
        monitor.expect_log(&["no longer watched", &format!("pid={}", target.pid())]);
        let mut selected = Target::spawn(&format!("{prefix}b"));
        target.grow(48);
        selected.grow(48);
        assert!(selected.wait_signal(USR1), "{}", monitor.log_text());
        monitor.expect_caught_up(mode);
        assert!(target.signals().is_empty(), "{}", monitor.log_text());
        assert!(monitor.stop().success());
    }
}

#[test]
#[ignore = "needs root"]
fn cmdline_regex_selects_by_the_whole_command_line() {
    for mode in ["poll", "ebpf"] {
        let name = unique_name("mms-c");
        // All have the same name; only the arguments tell them apart.
        let spawn = |args: &[&str]| {
            Target::spawn_with(&name, |command| {
                command.args(args);
            })
        };
        let mut other = spawn(&["-jar", "app-x.jar", "--port", "80"]);
        let mut selected = spawn(&["-jar", "app-12.jar", "--port", "80"]);
        // Its match ends past 100 KiB of arguments: within the 128 KiB read.
        let pad = "p".repeat(100 << 10);
        let mut far = spawn(&["--pad", &pad, "-jar", "app-7.jar", "--port", "80"]);
        let pattern = format!("{name} (--pad p+ )?-jar app-[0-9]+\\.jar --port 80$");
        let mut monitor = start(mode, &["--match", "cmdline-regex", &pattern]);
        other.grow(48);
        selected.grow(48);
        far.grow(48);
        assert!(selected.wait_signal(USR1), "{}", monitor.log_text());
        assert!(far.wait_signal(USR1), "{}", monitor.log_text());
        monitor.expect_log(&[&format!("pid={}", selected.pid()), "over the limit"]);
        monitor.expect_log(&[&format!("pid={}", far.pid()), "over the limit"]);
        monitor.expect_caught_up(mode);
        assert!(other.signals().is_empty(), "{}", monitor.log_text());
        assert!(monitor.stop().success());
    }
}

#[test]
fn list_prints_what_each_rule_selects_now_and_exits_0() {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let prefix = unique_name("mms-l");
    let mut selected = Target::spawn(&format!("{prefix}a"));
    selected.grow(24);
    let left_out = Target::spawn(&format!("{prefix}b"));
    let uid_text = uid.to_string();
    let base = [
        "-m",
        "64M",
        "--user",
        &uid_text,
        "--exclude-name",
        &format!("{prefix}b"),
        &prefix,
    ];

    let table = run(&[&["--list"], &base[..]].concat());
    assert!(table.status.success(), "{table:?}");
    let text = String::from_utf8(table.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].split_whitespace().eq([
            "RULE",
            "PID",
            "USER",
            "CONTAINER",
            "NAME",
            "RSS",
            "LIMIT",
            "USED"
        ]),
        "{text}"
    );
    let rows: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 1, "{text}");
    let row = &rows[0];
    let user = user_name(uid).unwrap_or_else(|| uid.to_string());
    assert_eq!(
        row[..5],
        [
            "command-line",
            &selected.pid().to_string(),
            &user,
            "-",
            &format!("{prefix}a")
        ]
    );
    assert_eq!(row[6], "64.0MiB", "{text}");
    let used: f64 = row[7].trim_end_matches('%').parse().unwrap();
    assert!(used > 30.0 && used < 100.0, "24 MiB of 64: {text}");

    let json = run(&[&["--list", "--log-format", "json"], &base[..]].concat());
    assert!(json.status.success(), "{json:?}");
    let text = String::from_utf8(json.stdout).unwrap();
    let objects: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 1, "{text}");
    let object = &objects[0];
    assert_eq!(object["pid"], selected.pid());
    assert_eq!(object["name"], format!("{prefix}a"));
    assert_eq!(object["rule"], "command-line");
    assert_eq!(object["uid"], uid);
    assert_eq!(object["user"], user);
    assert_eq!(object["limit_bytes"], 64u64 << 20);
    let rss = object["rss_bytes"].as_u64().unwrap();
    assert!(rss >= 24 << 20, "{text}");
    assert!(object["used_percent"].as_f64().unwrap() > 30.0, "{text}");
    // Nothing was signalled.
    assert!(selected.signals().is_empty());
    drop(left_out);
}

#[test]
fn list_with_nothing_selected_prints_the_header_alone_and_exits_0() {
    let output = run(&["--list", "-m", "1G", &unique_name("mms-none")]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let json = run(&[
        "--list",
        "--log-format",
        "json",
        "-m",
        "1G",
        &unique_name("mms-none"),
    ]);
    assert!(json.status.success() && json.stdout.is_empty(), "{json:?}");
}

#[test]
fn bad_users_exclusions_and_regexes_are_refused_with_one_line() {
    let file = RulesFile::new(
        "mms-bad",
        "[[rule]]\nname = \"r\"\nprefix = \"a\"\nuser = \"no-such-user-here\"\nmax-memory = 1\n",
    );
    let cases: [(&[&str], &str); 8] = [
        (
            &["-m", "1", "--user", "no-such-user-here", "a"],
            "invalid value 'no-such-user-here' for '--user <USER>': no such user in /etc/passwd",
        ),
        (
            &["-m", "1", "--exclude-user", "", "a"],
            "invalid value '' for '--exclude-user <USER>': is empty",
        ),
        (
            &["-m", "1", "--exclude-regex", "a(", "a"],
            "invalid value 'a('",
        ),
        (
            &["-m", "1", "--match", "cmdline-regex", "a("],
            "invalid value 'a(' for '<NAME>'",
        ),
        (
            &["-m", "1", "--exclude-cgroup", "/a/../b", "a"],
            "--exclude-cgroup",
        ),
        (
            &["--config", file.path(), "--exclude-name", "x"],
            "--exclude-name shapes the command line's rule, which needs NAME, --user, --pid or --cgroup",
        ),
        (
            &["-m", "1", "--user", "0", "--exclude-user", "root", "a"],
            "--exclude-user leaves out uid 0, which the rule selects by user",
        ),
        (
            &["--config", file.path()],
            ":4: rule 'r': user: 'no-such-user-here': no such user in /etc/passwd",
        ),
    ];
    for (args, expected) in cases {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// The processes the kernel side's `WATCHED` map holds, read from the map the monitor `pid`
/// holds.
fn kernel_watched(pid: i32) -> Vec<u32> {
    let map = memory_monitor_tests::bpf_map_of(pid, "WATCHED");
    // Only the keys matter here.
    let watched = aya::maps::HashMap::<_, u32, memory_monitor_ebpf::Watch>::try_from(
        aya::maps::Map::HashMap(map),
    )
    .unwrap();
    watched.keys().map(|key| key.expect("read a key")).collect()
}

#[test]
#[ignore = "needs root"]
fn the_kernel_side_never_follows_a_process_a_rule_leaves_out() {
    // With the monitor stopped, only the kernel side acts: a rule with nothing left out
    // watches a matching exec at once; one with exclusions only asks, so the process it
    // leaves out is never in the kernel side's table, not even before userspace has judged.
    let plain = unique_name("mms-kp");
    let prefix = unique_name("mms-kx");
    let file = RulesFile::new(
        "mms-k",
        &format!(
            "[[rule]]\nname = \"plain\"\nprefix = \"{plain}\"\nmax-memory = \"1G\"\n\n\
             [[rule]]\nname = \"left\"\nprefix = \"{prefix}\"\nexclude-name = \"{prefix}n\"\nmax-memory = \"1G\"\n"
        ),
    );
    let mut monitor = Monitor::start_rules("ebpf", file.path(), &[]);
    monitor.freeze();
    let decided = Target::spawn(&format!("{plain}a"));
    let left_out = Target::spawn(&format!("{prefix}n"));
    let watched = kernel_watched(monitor.pid());
    monitor.thaw();
    assert!(watched.contains(&(decided.pid() as u32)), "{watched:?}");
    assert!(!watched.contains(&(left_out.pid() as u32)), "{watched:?}");
    let log = monitor.log_text();
    assert!(monitor.stop().success(), "{log}");
}
