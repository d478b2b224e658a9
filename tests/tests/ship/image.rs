//! The container image the DaemonSet names (`cargo xtask image`: the static binary on
//! `scratch`), run the two ways the design names: as an unprivileged container of its own, it
//! polls, says why first, and signals a process in its container; privileged with the host's
//! PID namespace, as the DaemonSet runs it, eBPF mode signals a process on the host.

use std::path::Path;
use std::process::{Command, Stdio};

use memory_monitor_tests::shipped::{Container, dist_dir, podman, workspace};
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

/// A file of the OCI archive `cargo xtask image` wrote, read as JSON.
fn archived(archive: &Path, file: &str) -> serde_json::Value {
    let output = Command::new("tar")
        .arg("--extract")
        .arg("--to-stdout")
        .arg("--file")
        .arg(archive)
        .arg(file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{file}: {output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A blob the archive holds, by its descriptor.
fn blob(archive: &Path, descriptor: &serde_json::Value) -> serde_json::Value {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    archived(archive, &format!("blobs/sha256/{hex}"))
}

/// A file of the image `manifest` describes (its one layer, a gzip'd tar).
fn layer_file(archive: &Path, manifest: &serde_json::Value, file: &str) -> Vec<u8> {
    let layers = blob(archive, manifest)["layers"].clone();
    assert_eq!(layers.as_array().map(Vec::len), Some(1), "{layers}");
    let hex = layers[0]["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap()
        .to_string();
    let output = Command::new("sh")
        .arg("-c")
        .arg("tar -xOf \"$1\" \"blobs/sha256/$2\" | tar -xzO \"$3\"")
        .arg("sh")
        .arg(archive)
        .args([&hex, file])
        .output()
        .unwrap();
    assert!(output.status.success(), "{file}: {output:?}");
    output.stdout
}

#[test]
fn the_archive_holds_the_daemonset_s_image_for_amd64_and_arm64() {
    let image = daemonset_image();
    let version = image.rsplit(':').next().unwrap();
    let archive = dist_dir().join(format!("memory-monitor-{version}.oci.tar"));
    // One name, the DaemonSet's, for an index: a node pulls the image of its own architecture.
    let top = archived(&archive, "index.json");
    let named: Vec<&serde_json::Value> = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(&image))
        .collect();
    assert_eq!(named.len(), 1, "{top}");
    assert_eq!(
        named[0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let index = blob(&archive, named[0]);
    let mut platforms: Vec<String> = Vec::new();
    for manifest in index["manifests"].as_array().unwrap() {
        let platform = &manifest["platform"];
        let arch = platform["architecture"].as_str().unwrap();
        assert_eq!(platform["os"], "linux", "{index}");
        // What the image says of itself agrees with what the index says of it.
        let config = blob(&archive, &blob(&archive, manifest)["config"]);
        assert_eq!(config["architecture"], arch, "{config}");
        assert_eq!(
            config["config"]["Entrypoint"][0], "/usr/local/bin/memory-monitor",
            "{config}"
        );
        // And so does its binary: ELF's machine, at byte 18, is x86-64's (62) or AArch64's (183).
        let machine = match arch {
            "amd64" => 62,
            "arm64" => 183,
            other => panic!("an image for {other}"),
        };
        let binary = layer_file(&archive, manifest, "usr/local/bin/memory-monitor");
        assert!(binary.starts_with(b"\x7fELF"), "{arch}");
        assert_eq!(
            u16::from_le_bytes([binary[18], binary[19]]),
            machine,
            "{arch}"
        );
        platforms.push(arch.to_string());
    }
    platforms.sort();
    assert_eq!(platforms, ["amd64", "arm64"], "{index}");
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
