//! The command line: bad input exits 2 with one line naming what is wrong; help teaches.

use memory_monitor_tests::run_monitor;

#[test]
fn bad_input_exits_2_with_one_line_naming_it() {
    // (arguments, a fragment the one line must contain)
    let table: &[(&[&str], &str)] = &[
        (&[], "--max-memory"),
        (&["my-app"], "--max-memory"),
        (&["-m", "abc", "x"], "'abc'"),
        (&["-m", "5X", "x"], "'5X'"),
        (&["-m", "0", "x"], "'0'"),
        (&["-m", "-5", "x"], "-5"),
        (&["-m", "101%", "x"], "101%"),
        (&["-m", "1..5G", "x"], "1..5G"),
        (&["-m", "1", "-i", "0", "x"], "'0'"),
        (&["-m", "1", "-i", "soon", "x"], "soon"),
        (&["-m", "1", "-s", "FOO", "x"], "FOO"),
        (&["-m", "1", "-s", "0", "x"], "'0'"),
        (&["-m", "1", "-s", "99", "x"], "99"),
        (&["-m", "1", "-s", "RTMIN+99", "x"], "RTMIN+99"),
        (&["-m", "1", ""], "NAME is empty"),
        (&["-m", "1", "  "], "NAME is empty"),
        (&["-m", "1", "--match", "fuzzy", "x"], "fuzzy"),
        (&["-m", "1", "--match", "regex", "a(b"], "a(b"),
        (&["-m", "1", "--pid", "abc"], "abc"),
        (&["-m", "1", "--pid", "1"], "PID 1"),
        (&["-m", "1", "--pid", "0"], "'0'"),
        (&["-m", "1", "--pid", "999999999"], "no such process"),
        (&["-m", "1", "--repeat", "sometimes", "x"], "sometimes"),
        (&["-m", "1", "--kill-after", "0s", "x"], "0s"),
        (&["-m", "1", "--once", "--repeat", "1s", "x"], "--repeat"),
        (&["-m", "1", "--max-processes", "0", "x"], "'0'"),
        (&["-m", "1", "--log-format", "xml", "x"], "xml"),
        (&["-m", "1", "--bogus", "x"], "--bogus"),
        (&["-m", "1", "-v", "-q", "x"], "--quiet"),
        (&["-m", "1", "a", "b"], "'b'"),
        (&["-m", "90% of disk", "x"], "90% of disk"),
        (&["-m", "0% of cgroup", "x"], "0% of cgroup"),
        (
            &["-m", "1", "--cgroup", "/no-such-cgroup-here"],
            "no such cgroup",
        ),
        (&["-m", "1", "--cgroup", "/a/../b"], "not a cgroup path"),
        (&["-m", "1", "--metrics-addr", "nowhere", "x"], "nowhere"),
        (&["-m", "1", "--metrics-addr", ":99999", "x"], ":99999"),
        (&["-m", "1", "--oom-score-adj", "2000", "x"], "2000"),
        (&["-m", "1", "--oom-score-adj", "-1001", "x"], "-1001"),
        (
            &["--config", "/no/such/rules.toml"],
            "cannot read /no/such/rules.toml",
        ),
        // A device is no rules file (an empty one: tests/data/bad-rules/empty.toml).
        (
            &["--config", "/dev/null"],
            "a CharacterDevice, not a RegularFile",
        ),
        (&["--config", "/dev/null", "x"], "needs --max-memory"),
        (&["--config", "/dev/null", "-s", "USR1"], "--signal shapes"),
        (
            &["-m", "1", "--profile-at", "50%", "x"],
            "--profile-dir or --profile-to",
        ),
        (
            &["-m", "1", "--profile-to", "ftp://host/x", "x"],
            "ftp://host/x",
        ),
        // The tests' build is without the HTTP and S3 writers (the release binary has them).
        (
            &["-m", "1", "--profile-to", "s3://bucket/p", "x"],
            "--features object-store",
        ),
        (
            &["-m", "1", "--profile-to", "https://host/p", "x"],
            "--features object-store",
        ),
        (&["-m", "1", "--exec-timeout", "5s", "x"], "--exec"),
        (
            &["-m", "1", "--kernel-signal", "--mode", "poll", "x"],
            "--kernel-signal",
        ),
        (&["-m", "1", "--watch-config", "x"], "--config"),
    ];
    assert!(table.len() >= 25);
    for (args, fragment) in table {
        let (status, stderr) = run_monitor(args);
        assert_eq!(status.code(), Some(2), "{args:?} exits 2; stderr: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line, got: {stderr}");
        assert!(
            lines[0].starts_with("memory-monitor: ") && lines[0].contains(fragment),
            "{args:?}: {:?} should name {fragment:?}",
            lines[0]
        );
    }
}

#[test]
fn the_monitors_parent_cannot_be_watched() {
    let me = std::process::id().to_string();
    let (status, stderr) = run_monitor(&["-m", "1", "--pid", &me]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("parent"), "{stderr}");
}

#[test]
fn a_name_matching_the_monitor_itself_skips_it() {
    let child = std::process::Command::new(memory_monitor_tests::bin("memory-monitor"))
        .args([
            "--once",
            "--dry-run",
            "-m",
            "1K",
            "--match",
            "exact",
            "memory-monitor",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let me = format!("pid={} ", child.id());
    let output = child.wait_with_output().expect("wait");
    let log = String::from_utf8_lossy(&output.stderr);
    // Its own RSS is far over 1 KiB, yet it never names itself (other monitors may be named).
    assert!(log.contains("watching"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("over the limit") && l.contains(&me)),
        "{log}"
    );
}

#[test]
fn help_teaches_and_exits_0() {
    let (status, stderr) = run_monitor(&["--help"]);
    assert!(status.success(), "{stderr}");
    let output = std::process::Command::new(memory_monitor_tests::bin("memory-monitor"))
        .arg("--help")
        .output()
        .expect("run");
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "--max-memory",
        "--interval",
        "--signal",
        "--kill-after",
        "Examples:",
        "Exit status",
    ] {
        assert!(help.contains(needle), "--help mentions {needle}");
    }
    let (status, _) = run_monitor(&["--version"]);
    assert!(status.success());
}
