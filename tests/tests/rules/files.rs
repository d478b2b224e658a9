//! Rules files (`--config`): several rules, each with its own match, limit and signal, the
//! first that matches a process applying; `--check-config`; SIGHUP reloading them atomically.

use memory_monitor_tests::{Monitor, RulesFile, Target, run_monitor, unique_name};

const USR1: i32 = libc::SIGUSR1;
const USR2: i32 = libc::SIGUSR2;

fn rule(name: &str, matching: &str, limit: &str, signal: &str) -> String {
    format!(
        "[[rule]]\nname = \"{name}\"\n{matching}\nmax-memory = \"{limit}\"\nsignal = \"{signal}\"\nrepeat = \"never\"\n\n"
    )
}

fn start(mode: &str, file: &RulesFile) -> Monitor {
    Monitor::start_rules(mode, file.path(), &[])
}

#[test]
fn each_rule_applies_its_own_limit_and_signal_and_the_first_match_wins_in_poll_mode() {
    each_rule_applies_its_own_limit_and_signal_and_the_first_match_wins("poll");
}

#[test]
#[ignore = "needs root"]
fn each_rule_applies_its_own_limit_and_signal_and_the_first_match_wins_in_ebpf_mode() {
    each_rule_applies_its_own_limit_and_signal_and_the_first_match_wins("ebpf");
}

fn each_rule_applies_its_own_limit_and_signal_and_the_first_match_wins(mode: &str) {
    let small = unique_name("mmr-sm");
    // `large` also matches the third rule's prefix, `common` (a name of its own: a prefix
    // other tests' names share would take their processes too); the first rule, which names
    // it exactly, applies.
    let common = unique_name("mmr-cm");
    let large = format!("{common}lg");
    let file = RulesFile::new(
        "mmr-rl",
        &(rule("large", &format!("exact = \"{large}\""), "96M", "USR2")
            + &rule("small", &format!("prefix = \"{small}\""), "32M", "USR1")
            + &rule("common", &format!("prefix = \"{common}\""), "16M", "USR1")),
    );
    let mut small_target = Target::spawn(&small);
    let mut large_target = Target::spawn(&large);
    let mut monitor = start(mode, &file);
    monitor.expect_log(&["rule=large", "limit=96.0MiB"]);

    small_target.grow(48);
    large_target.grow(48);
    assert!(small_target.wait_signal(USR1), "{}", monitor.log_text());
    monitor.expect_log(&[&format!("pid={}", small_target.pid()), "over the limit"]);
    // 48 MiB is over 'small' and 'common' but under 'large', the rule that applies: a wrong
    // SIGUSR1 at 48 MiB would have been sent before the SIGUSR2 past 96 MiB, so the one signal
    // it gets, read once that later breach is in, proves it.
    large_target.grow(64);
    assert!(large_target.wait_signal(USR2), "{}", monitor.log_text());
    assert_eq!(large_target.signals(), [USR2], "{}", monitor.log_text());
    assert!(monitor.stop().success());
}

#[test]
fn a_renamed_process_comes_under_the_rule_its_new_name_matches_and_keeps_its_breach_in_poll_mode() {
    a_renamed_process_comes_under_the_rule_its_new_name_matches_and_keeps_its_breach("poll");
}

#[test]
#[ignore = "needs root"]
fn a_renamed_process_comes_under_the_rule_its_new_name_matches_and_keeps_its_breach_in_ebpf_mode() {
    a_renamed_process_comes_under_the_rule_its_new_name_matches_and_keeps_its_breach("ebpf");
}

fn a_renamed_process_comes_under_the_rule_its_new_name_matches_and_keeps_its_breach(mode: &str) {
    // Real-time signals queue: a second one sent would be a second one received.
    let small_signal = libc::SIGRTMIN() + 1;
    let large = unique_name("mmr-nl");
    let small = unique_name("mmr-ns");
    // The small rule matches by regex, so that in eBPF mode userspace is asked about
    // every rename (the kernel side decides prefixes itself).
    let file = RulesFile::new(
        "mmr-nm",
        &(rule("large", &format!("exact = \"{large}\""), "1G", "RTMIN+2")
            + &rule("small", &format!("regex = \"^{small}\""), "32M", "RTMIN+1")),
    );
    let mut target = Target::spawn(&large);
    let mut monitor = start(mode, &file);
    target.grow(48);
    // Under 'large' 48 MiB is fine; renamed, it falls under 'small' and is over.
    target.rename(&small);
    assert!(target.wait_signal(small_signal), "{}", monitor.log_text());
    let pid = format!("pid={}", target.pid());
    monitor.expect_log(&["over the limit", "rule=\"small\"", &pid]);
    // Renamed again under the same rule: the same process, the same breach.
    target.rename(&format!("{small}2"));
    target.exit();
    monitor.expect_log(&["exited", &pid]);
    let log = monitor.log_text();
    assert_eq!(monitor.count(&["over the limit", &pid]), 1, "{mode}: {log}");
    assert!(monitor.stop().success());
}

#[test]
fn with_watch_config_a_changed_file_is_read_again_as_an_editor_or_a_config_map_changes_it_in_poll_mode()
 {
    with_watch_config_a_changed_file_is_read_again_as_an_editor_or_a_config_map_changes_it("poll");
}

#[test]
#[ignore = "needs root"]
fn with_watch_config_a_changed_file_is_read_again_as_an_editor_or_a_config_map_changes_it_in_ebpf_mode()
 {
    with_watch_config_a_changed_file_is_read_again_as_an_editor_or_a_config_map_changes_it("ebpf");
}

fn with_watch_config_a_changed_file_is_read_again_as_an_editor_or_a_config_map_changes_it(
    mode: &str,
) {
    let name = unique_name("mmr-wc");
    // A ConfigMap's volume: the file is a link into `..data`, a link to the current data.
    let dir = std::env::temp_dir().join(unique_name("mmr-cm"));
    let write_data = |version: u32, limit: &str, signal: &str| {
        let data = dir.join(format!("..{version}"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(
            data.join("rules.toml"),
            rule("app", &format!("prefix = \"{name}\""), limit, signal),
        )
        .unwrap();
        // Kubernetes' atomic writer: a new link, renamed over `..data`.
        let tmp = dir.join("..data_tmp");
        std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
    };
    std::fs::create_dir_all(&dir).unwrap();
    write_data(1, "1G", "USR1");
    std::os::unix::fs::symlink("..data/rules.toml", dir.join("rules.toml")).unwrap();
    let file = dir.join("rules.toml");
    let mut target = Target::spawn(&name);
    target.grow(48);
    let mut monitor = Monitor::start_rules(mode, file.to_str().unwrap(), &["--watch-config"]);

    // The ConfigMap updated: read again without a SIGHUP.
    write_data(2, "32M", "USR2");
    assert!(target.wait_signal(USR2), "{mode}: {}", monitor.log_text());
    monitor.expect_log(&["rules reloaded"]);

    // An editor's save (written aside, renamed over the file), broken: refused, kept.
    std::fs::remove_file(&file).unwrap();
    let aside = dir.join("rules.toml.tmp");
    std::fs::write(&aside, "[[rule]]\nprefix = \"x\"\nmax-memory = \"lots\"\n").unwrap();
    std::fs::rename(&aside, &file).unwrap();
    monitor.expect_log(&[r#"event="reload_failed""#, "max-memory: 'lots'"]);
    // Fixed: a process started now falls under it.
    std::fs::write(
        &aside,
        rule("app", &format!("prefix = \"{name}\""), "32M", "USR1"),
    )
    .unwrap();
    std::fs::rename(&aside, &file).unwrap();
    monitor.expect_count(&["rules reloaded"], 2);
    let mut late = Target::spawn(&format!("{name}l"));
    late.grow(48);
    assert!(late.wait_signal(USR1), "{mode}: {}", monitor.log_text());

    // Rewritten in place in two steps, the first leaving it incomplete, both changes seen
    // together (the monitor frozen while they are made): read once, whole. (How long a
    // writer may pause between steps, the settle time, is a figure for the bench.)
    let refused = monitor.count(&[r#"event="reload_failed""#]);
    let whole = rule("app", &format!("prefix = \"{name}\""), "32M", "USR1");
    let (first, rest) = whole.split_at(whole.find("max-memory").unwrap());
    monitor.freeze();
    std::fs::remove_file(&file).unwrap();
    std::fs::write(&file, first).unwrap();
    let mut appended = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    std::io::Write::write_all(&mut appended, rest.as_bytes()).unwrap();
    monitor.thaw();
    monitor.expect_count(&["rules reloaded"], 3);
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(monitor.pid(), libc::SIGTERM) };
    assert!(monitor.wait().success());
    monitor.expect_log(&[r#"event="stop""#]);
    // Once, and whole: by its last word, one reload more and no refusal.
    assert_eq!(
        (
            monitor.count(&["rules reloaded"]),
            monitor.count(&[r#"event="reload_failed""#])
        ),
        (3, refused),
        "{mode}: {}",
        monitor.log_text()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sighup_reloads_the_rules_and_a_bad_file_keeps_them_in_poll_mode() {
    sighup_reloads_the_rules_and_a_bad_file_keeps_them("poll");
}

#[test]
#[ignore = "needs root"]
fn sighup_reloads_the_rules_and_a_bad_file_keeps_them_in_ebpf_mode() {
    sighup_reloads_the_rules_and_a_bad_file_keeps_them("ebpf");
}

fn sighup_reloads_the_rules_and_a_bad_file_keeps_them(mode: &str) {
    let name = unique_name("mmr-hup");
    let file = RulesFile::new(
        "mmr-hup",
        &rule("app", &format!("prefix = \"{name}\""), "64M", "USR1"),
    );
    let mut target = Target::spawn(&name);
    target.grow(48);
    let mut monitor = start(mode, &file);

    // A broken file: the reload is refused, saying where, and the rules in force stay.
    file.rewrite("[[rule]]\nprefix = \"x\"\nmax-memory = \"lots\"\n");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(monitor.pid(), libc::SIGHUP) };
    let refused = monitor.expect_log(&[r#"event="reload_failed""#]);
    assert!(
        refused.contains(&format!(
            "{}:3: rule 'rule-1': max-memory: 'lots'",
            file.path()
        )),
        "{refused}"
    );
    assert!(
        target.signals().is_empty(),
        "48 MiB is under the 64 MiB rule still in force"
    );

    // A good file: the new, lower limit applies to the process already watched.
    file.rewrite(&rule("app", &format!("prefix = \"{name}\""), "32M", "USR2"));
    // SAFETY: as above.
    unsafe { libc::kill(monitor.pid(), libc::SIGHUP) };
    monitor.expect_log(&["rules reloaded", "rules=1"]);
    assert!(target.wait_signal(USR2), "{}", monitor.log_text());
    assert_eq!(target.signals(), [USR2], "{}", monitor.log_text());

    // And to processes that start afterwards.
    let mut late = Target::spawn(&format!("{name}-late"));
    late.grow(40);
    assert!(late.wait_signal(USR2), "{}", monitor.log_text());
    assert!(monitor.stop().success(), "SIGHUP does not stop the monitor");
}

#[test]
fn check_config_prints_the_rules_or_says_what_is_wrong() {
    let good = RulesFile::new(
        "mmr-cg",
        &(rule("web", "prefix = \"nginx\"", "500M", "TERM")
            + &rule("jvm", "cmdline = \"-jar app.jar\"", "90% of cgroup", "USR1")),
    );
    let output = std::process::Command::new(memory_monitor_tests::bin("memory-monitor"))
        .args(["--config", good.path(), "--check-config"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains("rule 'web': processes whose name starts with 'nginx'"),
        "{printed}"
    );
    assert!(printed.contains("rule 'jvm': processes whose command line contains '-jar app.jar'"));
    assert!(
        printed.contains("limit: 90% of its cgroup's memory limit"),
        "{printed}"
    );

    let bad = RulesFile::new(
        "mmr-cb",
        "[[rule]]\nprefix = \"a\"\nmax-memory = \"1G\"\nsignal = \"SIGFOO\"\n",
    );
    let (status, stderr) = run_monitor(&["--config", bad.path(), "--check-config"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:4: rule 'rule-1': signal: 'SIGFOO'",
            bad.path()
        )),
        "{stderr}"
    );
}

#[test]
fn the_command_line_rule_goes_first() {
    let name = unique_name("mmr-cli");
    let file = RulesFile::new(
        "mmr-cli",
        &rule("file", &format!("prefix = \"{name}\""), "16M", "USR1"),
    );
    let output = std::process::Command::new(memory_monitor_tests::bin("memory-monitor"))
        .args([
            "--config",
            file.path(),
            "-m",
            "1G",
            "-s",
            "USR2",
            &name,
            "--check-config",
        ])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");
    let cli = printed
        .find("rule 'command-line'")
        .expect("the command line's rule");
    let from_file = printed.find("rule 'file'").expect("the file's rule");
    assert!(cli < from_file, "{printed}");
    // Options that shape a rule need a command-line rule to shape.
    let (status, stderr) = run_monitor(&["--config", file.path(), "-s", "USR2"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--signal shapes the command line's rule"),
        "{stderr}"
    );
}

#[test]
fn every_bad_rules_file_is_exit_2_with_one_line_naming_file_line_and_key() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/bad-rules");
    let table = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let cases: Vec<(&str, &str)> = table.lines().filter_map(|l| l.split_once('\t')).collect();
    assert!(cases.len() >= 17, "{} cases", cases.len());
    for (name, after_path) in cases {
        let file = dir.join(name);
        let (status, stderr) = run_monitor(&["--config", file.to_str().unwrap(), "--check-config"]);
        assert_eq!(status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
        let expected = format!("memory-monitor: {}{after_path}", file.display());
        assert!(
            stderr.starts_with(&expected),
            "{name}: {stderr}\n  not {expected}"
        );
    }
}
