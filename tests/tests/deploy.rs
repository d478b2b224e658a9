//! The Kubernetes manifests in `deploy/`: they parse, they give the DaemonSet what eBPF mode
//! needs (the same capabilities as the systemd unit, the host's PIDs and mounts), Prometheus
//! finds the metrics where they are served, and the binary accepts the container's command
//! line with the ConfigMap's rules.

use std::path::{Path, PathBuf};
use std::process::Command;

use memory_monitor_tests::{bin, unique_name};
use yaml_rust2::{Yaml, YamlLoader};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every document of every manifest.
fn documents() -> Vec<Yaml> {
    let mut documents = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in deploy/");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let parsed = YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", file.display()));
        documents.extend(parsed);
    }
    documents
}

fn of_kind<'a>(documents: &'a [Yaml], kind: &str) -> &'a Yaml {
    documents
        .iter()
        .find(|doc| doc["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} in deploy/"))
}

fn strings(list: &Yaml) -> Vec<String> {
    list.as_vec()
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The capabilities of the systemd unit's bounding set, without their CAP_ prefix.
fn unit_capabilities() -> Vec<String> {
    let unit =
        std::fs::read_to_string(deploy_dir().join("../packaging/memory-monitor.service")).unwrap();
    let line = unit
        .lines()
        .find_map(|line| line.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit bounds its capabilities");
    let mut capabilities: Vec<String> = line
        .split_whitespace()
        .map(|cap| cap.trim_start_matches("CAP_").to_string())
        .collect();
    capabilities.sort();
    capabilities
}

#[test]
fn the_daemonset_has_what_ebpf_mode_needs_and_prometheus_finds_it() {
    let documents = documents();
    let daemonset = of_kind(&documents, "DaemonSet");
    let pod = &daemonset["spec"]["template"];
    let spec = &pod["spec"];
    assert_eq!(
        spec["hostPID"].as_bool(),
        Some(true),
        "host processes are the ones watched"
    );
    let container = &spec["containers"][0];
    let security = &container["securityContext"];
    let mut added = strings(&security["capabilities"]["add"]);
    added.sort();
    assert_eq!(
        added,
        unit_capabilities(),
        "the same capabilities as the systemd unit"
    );
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert_ne!(
        security["privileged"].as_bool(),
        Some(true),
        "capabilities, not privileged"
    );

    let mounts = container["volumeMounts"].as_vec().unwrap();
    let volumes = spec["volumes"].as_vec().unwrap();
    for host_path in ["/sys/kernel/btf", "/sys/kernel/tracing", "/sys/fs/cgroup"] {
        let volume = volumes
            .iter()
            .find(|v| v["hostPath"]["path"].as_str() == Some(host_path))
            .unwrap_or_else(|| panic!("no hostPath volume for {host_path}"));
        let name = volume["name"].as_str().unwrap();
        let mount = mounts
            .iter()
            .find(|m| m["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{host_path} is not mounted"));
        assert_eq!(mount["mountPath"].as_str(), Some(host_path));
        assert_eq!(
            mount["readOnly"].as_bool(),
            Some(true),
            "{host_path} read-only"
        );
    }

    let args = strings(&container["args"]);
    let address = args
        .iter()
        .skip_while(|arg| *arg != "--metrics-addr")
        .nth(1)
        .expect("--metrics-addr ADDR:PORT");
    let port = address.rsplit(':').next().unwrap();
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(annotations["prometheus.io/port"].as_str(), Some(port));
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));
    let ports = container["ports"].as_vec().unwrap();
    assert!(
        ports.iter().any(|p| p["containerPort"]
            .as_i64()
            .map(|n| n.to_string())
            .as_deref()
            == Some(port)),
        "the metrics port {port} is a container port"
    );
}

#[test]
fn the_binary_accepts_the_container_command_line_and_the_rules() {
    let documents = documents();
    let daemonset = of_kind(&documents, "DaemonSet");
    let container = &daemonset["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(strings(&container["command"]), ["memory-monitor"]);
    let mut args = strings(&container["args"]);

    // Every option exists.
    let help = Command::new(bin("memory-monitor"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for option in args.iter().filter(|arg| arg.starts_with("--")) {
        assert!(
            help.contains(option.as_str()),
            "{option} is not an option of the binary"
        );
    }

    // The ConfigMap mounted where --config points holds rules the binary accepts.
    let config_map = of_kind(&documents, "ConfigMap");
    let rules = config_map["data"]["rules.toml"]
        .as_str()
        .expect("rules.toml");
    let config = args
        .iter()
        .position(|arg| arg == "--config")
        .expect("--config FILE");
    let mount = container["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| m["name"].as_str() == Some("rules"))
        .and_then(|m| m["mountPath"].as_str())
        .unwrap();
    assert_eq!(args[config + 1], format!("{mount}/rules.toml"));
    let file = std::env::temp_dir().join(format!("{}.toml", unique_name("mmd-rl")));
    std::fs::write(&file, rules).unwrap();
    args[config + 1] = file.display().to_string();
    let output = Command::new(bin("memory-monitor"))
        .args(&args)
        .arg("--check-config")
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    let complaint = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{complaint}");
    for name in rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("name = "))
    {
        let name = name.trim_matches('"');
        assert!(
            printed.contains(&format!("rule '{name}'")),
            "{name}: {printed}"
        );
    }
}
