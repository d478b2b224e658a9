//! The command line's tests: what each invocation means, and what `--help` says.

use super::*;
use crate::rules::{COMMAND_LINE_RULE, DEFAULT_PROFILE_AT_PERCENT, DEFAULT_PROFILE_BUDGET, Rule};

#[test]
fn help_gives_the_profile_defaults_in_force() {
    use clap::CommandFactory as _;
    let help = Cli::command().render_long_help().to_string();
    let budget = format!("[default: {}]", units::Period(DEFAULT_PROFILE_BUDGET));
    assert!(help.contains(&budget), "{budget} in {help}");
    let at = format!("[default: {DEFAULT_PROFILE_AT_PERCENT}%]");
    assert!(help.contains(&at), "{at} in {help}");
}

fn settings(args: &[&str]) -> Settings {
    let argv = std::iter::once("memory-monitor").chain(args.iter().copied());
    match parse_args(argv) {
        Ok(Parsed::Run(settings)) => *settings,
        other => panic!("{args:?}: {other:?}"),
    }
}

/// The command line's rule.
fn rule(s: &Settings) -> &Rule {
    s.config.rules.get(0)
}

fn limit(s: &Settings) -> u64 {
    s.config.rules.fixed_limit(0).unwrap()
}

fn error(args: &[&str]) -> String {
    let argv = std::iter::once("memory-monitor").chain(args.iter().copied());
    match parse_args(argv) {
        Err(UsageError(message)) => message,
        other => panic!("{args:?} should fail: {other:?}"),
    }
}

#[test]
fn the_man_page_and_completions_cover_every_option() {
    let man = match parse_args(["memory-monitor", "--generate", "man"]) {
        Ok(Parsed::Print(text)) => text,
        other => panic!("{other:?}"),
    };
    let bash = Generate::Bash.text();
    let command = Cli::command();
    let options = command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set())
        .filter_map(|arg| arg.get_long());
    for long in options {
        // roff escapes every dash.
        let escaped = format!("--{long}").replace('-', "\\-");
        assert!(man.contains(&escaped), "man page lacks --{long}");
        assert!(
            bash.contains(&format!("--{long}")),
            "bash completion lacks --{long}"
        );
    }
    assert!(
        !man.contains("generate"),
        "the hidden --generate is not documented"
    );
    // What a command line cannot say, in sections of their own.
    for section in [
        ".SH \"RULES FILE\"",
        ".SH \"EXIT STATUS\"",
        ".SH SIGNALS",
        ".SH ENVIRONMENT",
        ".SH FILES",
        ".SH EXAMPLES",
    ] {
        assert!(man.contains(section), "man page lacks {section}");
    }
    for word in [
        "SIGHUP",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "JOURNAL_STREAM",
        "AWS_",
    ] {
        assert!(man.contains(word), "man page lacks {word}");
    }
    // Every section header once: the sections are not rendered twice.
    let headers: Vec<&str> = man.lines().filter(|l| l.starts_with(".SH")).collect();
    let mut unique = headers.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(headers.len(), unique.len(), "{headers:?}");
}

#[test]
fn signal_names_complete_without_restricting_what_is_accepted() {
    for shell in [Generate::Bash, Generate::Zsh, Generate::Fish] {
        let script = shell.text();
        for name in ["TERM", "USR1", "KILL", "RTMIN"] {
            assert!(script.contains(name), "{shell:?} completion lacks {name}");
        }
    }
    for signal in ["RTMIN+3", "15", "sigusr2", "SIGTERM"] {
        let s = settings(&["-m", "1", "-s", signal, "x"]);
        assert_eq!(rule(&s).signal, signal.parse::<Signal>().unwrap());
    }
    // Help lists no possible values for it.
    let help = match parse_args(["memory-monitor", "--help"]) {
        Ok(Parsed::Print(text)) => text,
        other => panic!("{other:?}"),
    };
    assert!(!help.contains("HUP, INT"), "{help}");
    assert!(error(&["-m", "1", "-s", "FOO", "a"]).contains("unknown signal 'FOO'"));
}

#[test]
fn exec_help_names_every_variable_a_hook_gets() {
    let command = Cli::command();
    let exec = command
        .get_arguments()
        .find(|arg| arg.get_long() == Some("exec"))
        .unwrap();
    let help = exec.get_long_help().unwrap().to_string();
    // As hook.rs's runner sets them.
    let variables = [
        "MM_EVENT",
        "MM_PID",
        "MM_NAME",
        "MM_UID",
        "MM_USER",
        "MM_RSS_BYTES",
        "MM_LIMIT_BYTES",
        "MM_SIGNAL",
        "MM_ACTED_ON",
        "MM_PROFILE",
        "MM_RULE",
        "MM_CONTAINER_ID",
        "MM_POD_UID",
    ];
    for variable in variables {
        assert!(help.contains(variable), "--exec help lacks {variable}");
    }
}

#[test]
fn the_short_options_keep_their_meaning() {
    let s = settings(&["-m", "500", "-i", "3", "-s", "SIGUSR1", "example-process"]);
    assert_eq!(limit(&s), 500 << 20);
    assert_eq!(s.config.interval, Duration::from_secs(3));
    assert_eq!(rule(&s).signal.number(), libc::SIGUSR1);
    assert_eq!(rule(&s).repeat, Some(Duration::from_secs(3)));
    assert_eq!(
        rule(&s).selector.to_string(),
        "processes whose name starts with 'example-process'"
    );

    let s = settings(&["--max-memory", "100", "my-app"]);
    assert_eq!(limit(&s), 100 << 20);
    assert_eq!(s.config.interval, Duration::from_secs(2));
    assert_eq!(rule(&s).signal, Signal::TERM);
    assert!(!s.config.dry_run && !s.config.once);
    assert_eq!(rule(&s).kill_after, None);
    assert_eq!(rule(&s).name, COMMAND_LINE_RULE);
    assert_eq!(
        s.log,
        LogSettings {
            verbosity: 0,
            format: LogFormat::Text
        }
    );
}

#[test]
fn extended_options() {
    let s = settings(&[
        "-m",
        "1.5GiB",
        "-i",
        "250ms",
        "--repeat",
        "never",
        "--kill-after",
        "30s",
        "--match",
        "exact",
        "--pid",
        "2",
        "--pid",
        "3",
        "-vv",
        "--log-format",
        "json",
        "--dry-run",
        "--max-processes",
        "10",
        "app",
    ]);
    assert_eq!(limit(&s), 3 << 29);
    assert_eq!(s.config.interval, Duration::from_millis(250));
    assert_eq!(rule(&s).repeat, None);
    assert_eq!(rule(&s).kill_after, Some(Duration::from_secs(30)));
    let pids: Vec<i32> = rule(&s).selector.pids.iter().map(|p| p.pid).collect();
    assert_eq!(pids, [2, 3]);
    assert!(s.config.dry_run);
    assert_eq!(s.config.max_processes, 10);
    assert_eq!(
        s.log,
        LogSettings {
            verbosity: 2,
            format: LogFormat::Json
        }
    );
    assert_eq!(settings(&["-m", "1", "-qq", "x"]).log.verbosity, -2);
}

#[test]
fn pid_alone_needs_no_name() {
    let s = settings(&["-m", "1", "--pid", "2"]);
    assert!(rule(&s).selector.matcher.is_none());
    assert_eq!(rule(&s).selector.to_string(), "PID 2");
}

#[test]
fn errors_are_one_line() {
    let message = error(&["my-app"]);
    assert_eq!(
        message,
        "the following required arguments were not provided: --max-memory <SIZE>"
    );
    let message = error(&["-m", "5X", "app"]);
    assert!(
        message.contains("'5X'") && message.contains("unknown unit"),
        "{message}"
    );
    assert!(!error(&["--bogus", "-m", "1", "a"]).contains('\n'));
    assert!(error(&["-m", "1", "-s", "FOO", "a"]).contains("unknown signal 'FOO'"));
    assert!(error(&["-m", "1", "--pid", "1"]).contains("PID 1"));
    assert!(error(&["-m", "1", "  "]).contains("empty"));
}

fn printed(args: &[&str]) -> String {
    let argv = std::iter::once("memory-monitor").chain(args.iter().copied());
    match parse_args(argv) {
        Ok(Parsed::Print(text)) => text,
        other => panic!("{args:?}: {other:?}"),
    }
}

#[test]
fn short_help_is_one_line_a_flag_with_the_advanced_ones_apart() {
    let short = printed(&["-h"]);
    let command = Cli::command();
    let shown: Vec<_> = command
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .collect();
    // The about, the usage, the headings and the footer, and one line a flag.
    assert!(short.lines().count() <= shown.len() + 16, "{short}");
    for arg in &shown {
        let Some(long) = arg.get_long() else { continue };
        let line = short
            .lines()
            .find(|l| {
                let flag = format!("--{long}");
                l.split_whitespace()
                    .nth(usize::from(
                        l.trim_start().starts_with("-") && !l.trim_start().starts_with("--"),
                    ))
                    .is_some_and(|word| word.trim_end_matches('.') == flag)
            })
            .unwrap_or_else(|| panic!("-h lacks --{long}"));
        let at = short.find(line).unwrap() + line.len() + 1;
        let next = short[at..].lines().next().unwrap_or("");
        // A continuation is indented past the flags' column.
        assert!(
            !next.starts_with("                 "),
            "--{long} wraps:\n{line}\n{next}"
        );
    }
    let advanced = short
        .find(ADVANCED)
        .expect("a heading for the advanced flags");
    for everyday in ["--max-memory", "--signal", "--dry-run", "--once", "--list"] {
        assert!(short.find(everyday).unwrap() < advanced, "{everyday} first");
    }
    for rare in [
        "--attach",
        "--kernel-signal",
        "--profile-at",
        "--oom-score-adj",
    ] {
        assert!(
            short.find(rare).unwrap() > advanced,
            "{rare} under the heading"
        );
    }
}

#[test]
fn full_help_gives_the_examples_first_and_no_word_a_user_cannot_look_up() {
    let full = printed(&["--help"]);
    let examples = full.find("Examples:").expect("examples");
    assert!(examples < full.find("--max-memory").unwrap(), "{full}");
    for (command, _) in EXAMPLES {
        assert!(full.contains(command), "{command}");
    }
    for jargon in ["seed", "original tool", "the README"] {
        assert!(!full.contains(jargon), "--help says {jargon:?}");
    }
    assert!(full.contains("--manual"), "--help names the manual");
}

#[test]
fn the_manual_has_every_rules_file_key() {
    let page = match parse_args(["memory-monitor", "--manual"]) {
        Ok(Parsed::Manual(page)) => page,
        other => panic!("{other:?}"),
    };
    for key in crate::rules::file_keys() {
        let escaped = format!("\\fB{}\\fR", key.replace('-', "\\-"));
        assert!(page.contains(&escaped), "the man page lacks the key {key}");
    }
}

#[test]
fn usage_errors_keep_the_hints() {
    let typo = error(&["-m", "1", "--dryrun", "x"]);
    assert!(typo.contains("'--dry-run'"), "{typo}");
    let second = error(&["-m", "500", "my-app", "extra"]);
    assert!(
        second.contains("only one NAME") && second.contains("--match regex"),
        "{second}"
    );
    // Negative values reach the value's own parser, which says what is wrong.
    for (args, said) in [
        (&["-m", "-5", "x"][..], "'-5' is negative"),
        (&["--repeat", "-1s", "-m", "1", "x"], "'-1s' is negative"),
        (&["--repeat=-1s", "-m", "1", "x"], "'-1s' is negative"),
        (&["-i", "-2", "-m", "1", "x"], "'-2' is negative"),
    ] {
        let message = error(args);
        assert!(message.contains(said), "{args:?}: {message}");
    }
    let jargon = error(&["--repeat", "1x2", "-m", "1", "x"]);
    assert!(!jargon.contains("expected"), "{jargon}");
}

#[test]
fn list_needs_no_limit() {
    let s = settings(&["--list", "my-app"]);
    assert!(s.list);
    assert_eq!(rule(&s).limit, SizeSpec::PercentOfRam(100.0));
}

#[test]
fn signals_that_stop_a_process_are_refused() {
    for signal in ["STOP", "TSTP", "TTIN", "sigttou", "19"] {
        let message = error(&["-m", "1", "-s", signal, "x"]);
        assert!(
            message.contains("keeps all its memory"),
            "{signal}: {message}"
        );
    }
}

#[test]
fn check_config_warns_of_doubtful_values() {
    let table: [(&[&str], &str); 4] = [
        (
            &["-m", "500MB"],
            "warning: rule 'command-line': max-memory: 'MB'",
        ),
        (&["-m", "0.0001"], "less than nearly any process"),
        (&["-m", "1G", "-s", "KILL"], "SIGKILL again every 2s"),
        (
            &["-m", "1G", "-i", "1ms", "--mode", "poll"],
            "warning: --interval 1ms",
        ),
    ];
    for (args, said) in table {
        let text = printed(&[&["--check-config", "x"][..], args].concat());
        assert!(text.contains(said), "{args:?}: {text}");
    }
    let quiet = printed(&[
        "--check-config",
        "-m",
        "1G",
        "-s",
        "KILL",
        "--repeat",
        "never",
        "x",
    ]);
    assert!(!quiet.contains("warning"), "{quiet}");
}

#[test]
fn a_missing_cgroup_is_waited_for_as_in_a_rules_file() {
    let text = printed(&[
        "--check-config",
        "-m",
        "1G",
        "--cgroup",
        "/no-such-cgroup-here",
    ]);
    assert!(
        text.contains("does not exist (yet); the monitor waits for it"),
        "{text}"
    );
}

#[test]
fn help_is_printed_not_an_error() {
    let argv = ["memory-monitor", "--help"];
    match parse_args(argv) {
        Ok(Parsed::Print(text)) => {
            assert!(text.contains("--max-memory") && text.contains("Examples:"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pressure_triggers_and_their_mistakes() {
    let s = settings(&[
        "-m",
        "1G",
        "--cgroup",
        "/batch",
        "--on-pressure",
        "full:100ms/2s",
        "--on-high",
        "--pressure-action",
        "signal-largest",
    ]);
    let rule = rule(&s);
    assert_eq!(rule.on_pressure.unwrap().to_string(), "full:100ms/2s");
    assert!(rule.on_high);
    assert_eq!(rule.pressure_action, PressureAction::SignalLargest);
    for (args, said) in [
        (
            &["-m", "1G", "--on-high", "x"][..],
            "--on-high follows the memory.high of the cgroup the rule selects by, and it selects by none: add a cgroup",
        ),
        (
            &["-m", "1G", "--pressure-action", "report", "x"],
            "--pressure-action needs --on-pressure or --on-high",
        ),
        (
            &["-m", "1G", "--on-pressure", "some:1s/20s", "x"],
            "the kernel takes a window from 500ms to 10s",
        ),
        (
            &["--config", "/nonexistent", "--on-pressure", "some:1s/2s"],
            "--on-pressure shapes the command line's rule",
        ),
    ] {
        let error = error(args);
        assert!(error.contains(said), "{args:?}: {error}");
    }
}
