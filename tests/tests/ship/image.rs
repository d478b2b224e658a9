//! The container image the DaemonSet names (`cargo xtask image`: the static binary on
//! `scratch`), run the two ways the design names: as an unprivileged container of its own, it
//! polls, says why first, and signals a process in its container; privileged with the host's
//! PID namespace, as the DaemonSet runs it, eBPF mode signals a process on the host.

use std::path::Path;
use std::process::{Command, Stdio};

use memory_monitor_tests::shipped::{Container, podman, workspace};
use memory_monitor_tests::{Monitor, Target, bin, bin_dir, link_to, unique_name, usr1_over_32m};
use yaml_rust2::YamlLoader;

/// The image the DaemonSet runs.
fn daemonset_image() -> String {
    let text = std::fs::read_to_string(workspace().join("deploy/memory-monitor.yaml")).unwrap();
    let documents = YamlLoader::load_from_str(&text).unwrap();
    let daemonset = documents
        .iter()
        .find(|doc| doc["kind"].as_str() == Some("DaemonSet"))
        .expect("a DaemonSet");
    daemonset["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .expect("an image")
        .to_string()
}

/// For `Monitor::start_with`: the monitor as the image's entrypoint in a container named
/// `name`, with `options` for `podman run`, the monitor's arguments after the image.
fn in_container(name: &str, options: &[String]) -> impl FnOnce(&mut Command) {
    let (name, options) = (name.to_string(), options.to_vec());
    move |command| {
        let mut run = podman();
        run.args([
            "run",
            "--rm",
            "--pull=never",
            "--network=none",
            "--name",
            &name,
        ])
        .args(&options)
        .arg(daemonset_image())
        .args(command.get_args());
        *command = run;
    }
}

/// `-v PATH:PATH:ro` for each of `paths`.
fn mounted(paths: &[&Path]) -> Vec<String> {
    paths
        .iter()
        .flat_map(|path| {
            let path = path.display();
            ["--volume".to_string(), format!("{path}:{path}:ro")]
        })
        .collect()
}

#[test]
#[ignore = "needs root"]
fn unprivileged_it_polls_says_why_first_and_signals_a_process_in_its_container() {
    let name = unique_name("mmi-pod");
    let container = Container(format!("mm-test-{name}"));
    // The target is the tests' own (glibc) program, run inside the container: the host's
    // libraries are lent to it read-only, which the monitor itself does not need.
    let link = link_to(bin("mm-target"), &name);
    let mut mounts = mounted(&[&bin_dir(), link.parent().unwrap()]);
    for (host, inside) in [("/usr/lib", "/lib"), ("/usr/lib64", "/lib64")] {
        mounts.extend(["--volume".to_string(), format!("{host}:{inside}:ro")]);
    }
    // Default capabilities, its own PID namespace: what an unprivileged pod gets.
    let mut monitor = Monitor::start_with(
        &usr1_over_32m("auto", &[&name]),
        in_container(&container.0, &mounts),
    );
    monitor.expect_log(&["watching"]);
    let log = monitor.log_text();
    let first = log.lines().next().unwrap_or_default();
    assert!(
        first.contains("mode=poll") && first.contains("why="),
        "the first line says it polls and why: {log}"
    );

    let mut target = Target::spawn_with(&name, |command| {
        let mut exec = podman();
        exec.args(["exec", "--interactive", &container.0])
            .arg(command.get_program());
        exec.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        *command = exec;
    });
    target.grow(48);
    assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
    monitor.expect_log(&["over the limit", &format!("pid={}", target.pid())]);
    assert!(monitor.stop().success());
}

#[test]
#[ignore = "needs root"]
fn privileged_with_the_host_pids_it_signals_a_host_process_in_ebpf_mode() {
    let name = unique_name("mmi-host");
    let container = Container(format!("mm-test-{name}"));
    let mut target = Target::spawn(&name);
    let options = ["--privileged".to_string(), "--pid=host".to_string()];
    let mut monitor = Monitor::start_with(
        &usr1_over_32m("ebpf", &[&name]),
        in_container(&container.0, &options),
    );
    monitor.expect_log(&["watching", "mode=ebpf"]);
    target.grow(48);
    assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
    monitor.expect_log(&["over the limit", &format!("pid={}", target.pid())]);
    assert!(monitor.stop().success());
}
