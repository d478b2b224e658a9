//! The command line: bad input exits 2 with one line naming what is wrong; help teaches.

use memory_monitor_tests::{Monitor, Target, run_monitor, unique_name};

#[test]
fn bad_input_exits_2_with_one_line_naming_it() {
    // (arguments, a fragment the one line must contain)
    let table: &[(&[&str], &str)] = &[
        (&[], "--max-memory"),
        (&["my-app"], "--max-memory"),
        (&["-m", "abc", "mm-refused"], "'abc'"),
        (&["-m", "5X", "mm-refused"], "'5X'"),
        (&["-m", "0", "mm-refused"], "'0'"),
        (&["-m", "-5", "mm-refused"], "-5"),
        (&["-m", "101%", "mm-refused"], "101%"),
        (&["-m", "1..5G", "mm-refused"], "1..5G"),
        (&["-m", "1", "-i", "0", "mm-refused"], "'0'"),
        (&["-m", "1", "-i", "soon", "mm-refused"], "soon"),
        (&["-m", "1", "-s", "FOO", "mm-refused"], "FOO"),
        (&["-m", "1", "-s", "0", "mm-refused"], "'0'"),
        (&["-m", "1", "-s", "99", "mm-refused"], "99"),
        (&["-m", "1", "-s", "RTMIN+99", "mm-refused"], "RTMIN+99"),
        (&["-m", "1", ""], "NAME is empty"),
        (&["-m", "1", "  "], "NAME is empty"),
        (&["-m", "1", "--match", "fuzzy", "mm-refused"], "fuzzy"),
        (&["-m", "1", "--match", "regex", "a(b"], "a(b"),
        (&["-m", "1", "--pid", "abc"], "abc"),
        (&["-m", "1", "--pid", "1"], "PID 1"),
        (&["-m", "1", "--pid", "0"], "'0'"),
        (&["-m", "1", "--pid", "999999999"], "no such process"),
        (
            &["-m", "1", "--repeat", "sometimes", "mm-refused"],
            "sometimes",
        ),
        (&["-m", "1", "--kill-after", "0s", "mm-refused"], "0s"),
        (
            &["-m", "1", "--once", "--repeat", "1s", "mm-refused"],
            "--repeat",
        ),
        (&["-m", "1", "--max-processes", "0", "mm-refused"], "'0'"),
        (&["-m", "1", "--log-format", "xml", "mm-refused"], "xml"),
        (&["-m", "1", "--bogus", "mm-refused"], "--bogus"),
        (&["-m", "1", "-v", "-q", "mm-refused"], "--quiet"),
        (&["-m", "1", "a", "b"], "'b'"),
        (&["-m", "90% of disk", "mm-refused"], "90% of disk"),
        (&["-m", "0% of cgroup", "mm-refused"], "0% of cgroup"),
        (
            &["-m", "1", "--dryrun", "mm-refused"],
            "a similar argument exists: '--dry-run'",
        ),
        (&["-m", "500", "my-app", "extra"], "only one NAME"),
        (
            &["-m", "1", "--repeat=-1s", "mm-refused"],
            "'-1s' is negative",
        ),
        (
            &["-m", "1", "--repeat", "-1s", "mm-refused"],
            "'-1s' is negative",
        ),
        (
            &["-m", "1", "-s", "STOP", "mm-refused"],
            "keeps all its memory",
        ),
        (
            &["-m", "1", "-s", "TSTP", "mm-refused"],
            "keeps all its memory",
        ),
        (&["-m", "1", "--cgroup", "/a/../b"], "not a cgroup path"),
        (
            &["-m", "1", "--metrics-addr", "nowhere", "mm-refused"],
            "nowhere",
        ),
        (
            &["-m", "1", "--metrics-addr", ":99999", "mm-refused"],
            ":99999",
        ),
        (
            &["-m", "1", "--oom-score-adj", "2000", "mm-refused"],
            "2000",
        ),
        (
            &["-m", "1", "--oom-score-adj", "-1001", "mm-refused"],
            "-1001",
        ),
        (
            &["--config", "/no/such/rules.toml"],
            "cannot read /no/such/rules.toml",
        ),
        // A device is no rules file (an empty one: tests/data/bad-rules/empty.toml).
        (
            &["--config", "/dev/null"],
            "a CharacterDevice, not a RegularFile",
        ),
        (
            &["--config", "/dev/null", "mm-refused"],
            "needs --max-memory",
        ),
        (&["--config", "/dev/null", "-s", "USR1"], "--signal shapes"),
        (
            &["-m", "1", "--profile-at", "50%", "mm-refused"],
            "--profile-dir or --profile-to",
        ),
        (
            &["-m", "1", "--profile-to", "ftp://host/x", "mm-refused"],
            "ftp://host/x",
        ),
        // The tests' build is without the HTTP and S3 writers (the release binary has them).
        (
            &["-m", "1", "--profile-to", "s3://bucket/p", "mm-refused"],
            "--features object-store",
        ),
        (
            &["-m", "1", "--profile-to", "https://host/p", "mm-refused"],
            "--features object-store",
        ),
        (&["-m", "1", "--exec-timeout", "5s", "mm-refused"], "--exec"),
        (
            &["-m", "1", "--kernel-signal", "--mode", "poll", "mm-refused"],
            "--kernel-signal",
        ),
        (
            &["-m", "1", "--bpf-stats", "--mode", "poll", "mm-refused"],
            "--bpf-stats",
        ),
        (&["-m", "1", "--watch-config", "mm-refused"], "--config"),
        (&["-m", "32M", "--warn-at", "lots", "mm-refused"], "'lots'"),
        (
            &["-m", "32M", "--leak-warmup", "1m", "mm-refused"],
            "--leak-warmup needs --leak-horizon",
        ),
        (
            &["-m", "32M", "--leak-horizon", "500ms", "mm-refused"],
            "--leak-horizon is under a second",
        ),
        (
            &["-m", "32M", "--warn-at", "100%", "mm-refused"],
            "under 100%",
        ),
        (
            &["-m", "32M", "--warn-at", "40M", "mm-refused"],
            "--warn-at 40.0MiB is not under the limit (32.0MiB): give a smaller size",
        ),
    ];
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
        // Every usage error says where to learn more.
        assert!(
            lines[0].ends_with("; see 'memory-monitor --help'"),
            "{args:?}: {:?}",
            lines[0]
        );
    }
}

/// Runs the monitor to completion with `args`: exit status, stdout and stderr.
fn run_output(args: &[&str]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new(memory_monitor_tests::bin("memory-monitor"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn list_needs_no_limit() {
    let name = unique_name("mmcli-ls");
    let target = Target::spawn(&name);
    let (status, out, err) = run_output(&["--list", &name]);
    assert_eq!(status, Some(0), "{err}");
    assert!(out.contains(&target.pid().to_string()), "{out}");
}

#[test]
fn check_config_says_doubtful_values_and_still_exits_0() {
    let (status, out, err) = run_output(&[
        "--check-config",
        "-m",
        "500MB",
        "-s",
        "KILL",
        "-i",
        "1ms",
        "--mode",
        "poll",
        "x",
    ]);
    assert_eq!(status, Some(0), "{err}");
    for said in [
        "'MB' is read as binary",
        "SIGKILL again every 1ms",
        "--interval 1ms",
    ] {
        assert!(out.contains(said), "{said}: {out}");
    }
    // And at start, as warnings.
    let name = unique_name("mmcli-cau");
    let (status, _, err) = run_output(&[
        "--once", "-m", "0.0001", "--mode", "poll", "-i", "1ms", &name,
    ]);
    assert_eq!(status, Some(0), "{err}");
    assert!(
        err.contains(r#"event="caution""#) && err.contains("105B"),
        "{err}"
    );
    assert!(err.contains("--interval 1ms"), "{err}");
}

#[test]
fn the_manual_is_there_without_an_installed_page() {
    // Not a terminal: the page's source, for `man -l -`.
    let (status, page, err) = run_output(&["--manual"]);
    assert_eq!(status, Some(0), "{err}");
    for section in [
        ".SH \"RULES FILE\"",
        ".SH \"EXIT STATUS\"",
        "exclude\\-cgroup",
        "max\\-memory",
    ] {
        assert!(page.contains(section), "the manual lacks {section}");
    }
}

#[test]
#[ignore = "needs root"]
fn a_second_monitor_with_the_same_rules_is_noticed_and_named() {
    let name = unique_name("mmcli-2m");
    let args = ["--mode", "poll", "-v", "-m", "1G", &name];
    let mut first = Monitor::start(&args);
    first.expect_log(&["checked"]);
    let mut second = Monitor::start(&args);
    let line = second.expect_log(&[r#"event="other_monitor""#]);
    assert!(line.contains(&format!("PID {}", first.pid())), "{line}");
    // The first was alone when it started, and other rules are another lock.
    let mut other = Monitor::start(&["--mode", "poll", "-v", "-m", "2G", &name]);
    other.expect_log(&["checked"]);
    assert_eq!(first.count(&["other_monitor"]), 0, "{}", first.log_text());
    assert_eq!(other.count(&["other_monitor"]), 0, "{}", other.log_text());
    // A dry run may run beside it, unnamed.
    let mut dry = Monitor::start(&["--mode", "poll", "-v", "-m", "1G", "--dry-run", &name]);
    dry.expect_log(&["checked"]);
    assert_eq!(dry.count(&["other_monitor"]), 0, "{}", dry.log_text());
    for monitor in [first, second, other, dry] {
        assert!(monitor.stop().success());
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

/// The flags `--help` lists: each on a line of its own, indented at most six spaces.
fn help_flags() -> Vec<String> {
    let (_, help, _) = run_output(&["--help"]);
    let flags: Vec<String> = help
        .lines()
        .filter(|line| {
            let flag = line.trim_start();
            flag.starts_with('-') && line.len() - flag.len() <= 6
        })
        .filter_map(|line| line.split([' ', ',']).find(|w| w.starts_with("--")))
        .map(|word| word.trim_end_matches('.').to_string())
        .collect();
    assert!(flags.len() >= 35, "{} flags read from --help", flags.len());
    flags
}

#[test]
fn the_manual_the_binary_prints_has_every_flag_of_help() {
    // Not a terminal: the roff source, as `cargo xtask dist` ships it in memory-monitor.1.
    let (status, page, _) = run_output(&["--manual"]);
    assert_eq!(status, Some(0));
    for flag in help_flags() {
        // roff escapes every dash.
        let escaped = flag.replace('-', "\\-");
        assert!(page.contains(&escaped), "the man page lacks {flag}");
    }
}

#[test]
fn the_readme_and_the_guide_name_only_flags_of_help() {
    let flags = help_flags();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for doc in ["README.md", "docs/guide.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        // The monitor's own command lines: code spans that are a flag, and lines or spans
        // that run memory-monitor (not other programs', such as setpriv's or cargo's).
        let spans = text.split('`').skip(1).step_by(2);
        let commands = text.lines().filter_map(|line| {
            let line = line.trim_start_matches("$ ");
            line.starts_with("memory-monitor ").then_some(line)
        });
        for command in spans.chain(commands) {
            let words: Vec<&str> = command
                .split(|c: char| c.is_whitespace() || c == '=')
                .collect();
            let named = match words[0] {
                "memory-monitor" => &words[1..],
                first if first.starts_with("--") => &words[..1],
                _ => continue,
            };
            for word in named.iter().filter(|w| w.starts_with("--") && w.len() > 2) {
                assert!(
                    flags.iter().any(|flag| flag == word),
                    "{doc} names {word}, which --help does not list"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "{checked} flags named in the docs");
}
