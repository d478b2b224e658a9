//! Files the monitor acts on are trusted only as sshd trusts `authorized_keys`: the rules file
//! (whose `exec` entries run as root) and the profile directory (where other users' memory maps
//! go) must be changeable by root alone, and the directory is never reached through a symbolic
//! link nor made before the first profile, nor with its parents.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use memory_monitor_tests::{Monitor, RulesFile, Target, run_monitor, unique_name, usr1_over_32m};

const RULE: &str = "[[rule]]\nname = \"app\"\nprefix = \"app\"\nmax-memory = \"1G\"\n";

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_rules_file_others_may_write_is_refused() {
    let rules = RulesFile::new("mmt-rules", RULE);
    for mode in [0o666, 0o620] {
        chmod(Path::new(rules.path()), mode);
        for check in [true, false] {
            let mut args = vec!["--config", rules.path()];
            if check {
                args.push("--check-config");
            }
            let (status, said) = run_monitor(&args);
            assert_eq!(status.code(), Some(2), "{mode:o}: {said}");
            assert!(said.contains("writable by its group or others"), "{said}");
        }
    }
    chmod(Path::new(rules.path()), 0o644);
    assert!(
        run_monitor(&["--config", rules.path(), "--check-config"])
            .0
            .success()
    );
}

#[test]
#[ignore = "needs root"]
fn a_rules_file_or_directory_another_user_owns_is_refused() {
    let rules = RulesFile::new("mmt-owner", RULE);
    std::os::unix::fs::chown(rules.path(), Some(65534), None).unwrap();
    let (status, said) = run_monitor(&["--config", rules.path(), "--check-config"]);
    assert_eq!(status.code(), Some(2), "{said}");
    assert!(said.contains("owned by uid 65534"), "{said}");
    // A root-owned file in a directory the user owns: they may replace it.
    let dir = std::env::temp_dir().join(unique_name("mmt-dir"));
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("rules.toml");
    std::fs::write(&file, RULE).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
    let (status, said) = run_monitor(&["--config", file.to_str().unwrap(), "--check-config"]);
    assert_eq!(status.code(), Some(2), "{said}");
    assert!(said.contains("owned by uid 65534"), "{said}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_profile_directory_is_made_at_the_first_profile_alone_and_never_through_a_link() {
    let base = std::env::temp_dir().join(unique_name("mmt-prof"));
    std::fs::create_dir(&base).unwrap();
    let elsewhere = base.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let linked = base.join("linked");
    std::os::unix::fs::symlink(&elsewhere, &linked).unwrap();
    let missing = base.join("missing/profiles");
    let made = base.join("made");
    let name = unique_name("mmt-p");
    let mut targets = Vec::new();
    for (n, dir) in [&linked, &missing, &made].into_iter().enumerate() {
        let target_name = format!("{name}{n}");
        let mut target = Target::spawn(&target_name);
        let dir_arg = dir.display().to_string();
        let mut monitor = Monitor::start(&usr1_over_32m(
            "poll",
            &["--profile-dir", &dir_arg, &target_name],
        ));
        monitor.expect_log(&["watching"]);
        assert!(!made.exists(), "made before any profile");
        target.grow(48);
        assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
        let pid = format!("pid={}", target.pid());
        match dir == &made {
            true => {
                monitor.expect_log(&["profile written", &pid]);
                let mode = std::fs::metadata(&made).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o700);
            }
            false => {
                monitor.expect_log(&[r#"event="profile_failed""#, &pid]);
            }
        }
        assert!(monitor.stop().success());
        targets.push(target);
    }
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "written through the link"
    );
    assert!(!base.join("missing").exists(), "a parent was made");
    std::fs::remove_dir_all(&base).unwrap();
}
