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
        if host_path == "/sys/kernel/tracing" {
            assert_eq!(
                mount["mountPropagation"].as_str(),
                Some("HostToContainer"),
                "a tracefs the host mounts later is seen"
            );
        }
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

/// A Kubernetes memory quantity (`48Mi`, `1Gi`, `128M`, bytes) in bytes.
fn quantity(text: &str) -> u64 {
    let units = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("M", 1_000_000),
    ];
    let (number, unit) = units
        .iter()
        .find_map(|&(suffix, unit)| Some((text.strip_suffix(suffix)?, unit)))
        .unwrap_or((text, 1));
    number.parse::<u64>().expect("a whole quantity") * unit
}

#[test]
fn the_daemonset_runs_at_its_own_priority_with_room_to_start_and_explicit_probes() {
    let documents = documents();
    let spec = &of_kind(&documents, "DaemonSet")["spec"]["template"]["spec"];
    // Its own class: system-node-critical is refused outside kube-system on some clusters.
    let class = of_kind(&documents, "PriorityClass");
    let name = class["metadata"]["name"].as_str().expect("a named class");
    assert_eq!(spec["priorityClassName"].as_str(), Some(name));
    assert!(!name.starts_with("system-"), "{name} is the system's");
    let value = class["value"].as_i64().expect("a value");
    // The API server refuses a user-defined class above one billion.
    assert!(
        (1..=1_000_000_000).contains(&value),
        "{value} is not a user-defined priority"
    );
    assert!(
        class["metadata"]["namespace"].is_badvalue(),
        "cluster-scoped"
    );

    let container = &spec["containers"][0];
    // The start-up peak (parsing the kernel's BTF) is requested; the limit has room above it.
    let resources = &container["resources"];
    let request = quantity(resources["requests"]["memory"].as_str().unwrap());
    let limit = quantity(resources["limits"]["memory"].as_str().unwrap());
    const BTF_PEAK: u64 = 42 << 20;
    assert!(
        BTF_PEAK <= request && 2 * BTF_PEAK <= limit,
        "{request} {limit}"
    );
    let probe = &container["livenessProbe"];
    let period = probe["periodSeconds"].as_i64().expect("periodSeconds");
    let timeout = probe["timeoutSeconds"].as_i64().expect("timeoutSeconds");
    let failures = probe["failureThreshold"]
        .as_i64()
        .expect("failureThreshold");
    assert!(0 < timeout && timeout < period && failures > 1, "{probe:?}");
    // The probe asks the monitor's loop itself, on the metrics port, and gives it the time it
    // is given to answer (2 s).
    assert_eq!(
        probe["httpGet"]["path"].as_str(),
        Some("/healthz"),
        "{probe:?}"
    );
    assert_eq!(
        probe["httpGet"]["port"].as_str(),
        Some("metrics"),
        "{probe:?}"
    );
    assert!(timeout > 2, "{probe:?}");
    assert_eq!(
        container["securityContext"]["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault"),
        "Unconfined only where the runtime's profile refuses bpf() (deploy/README.md)"
    );
}

/// The instructions of a Containerfile, continuation lines joined, comments left out: each
/// as its keyword (upper case) and the rest of the line.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current += &format!("{part} "),
            None => joined.push(std::mem::take(&mut current) + line),
        }
    }
    joined
        .iter()
        .filter_map(|line| {
            let (keyword, rest) = line.split_once(' ')?;
            Some((keyword.to_ascii_uppercase(), rest.trim().to_string()))
        })
        .collect()
}

/// The workspace's `[workspace.package]` key `key`.
fn workspace_package(key: &str) -> String {
    let text = std::fs::read_to_string(deploy_dir().join("../Cargo.toml")).unwrap();
    let manifest: toml::Table = text.parse().expect("Cargo.toml parses");
    manifest["workspace"]["package"][key]
        .as_str()
        .expect("a string")
        .to_string()
}

#[test]
fn the_image_installs_what_the_daemonset_runs_at_the_workspace_version() {
    let text = std::fs::read_to_string(deploy_dir().join("Containerfile")).unwrap();
    let instructions = instructions(&text);
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (keyword, _))| keyword == "FROM")
        .map(|(index, _)| index)
        .collect();
    let last = *stages.last().expect("a FROM");
    let image = &instructions[last].1;
    let final_stage = &instructions[last + 1..];

    // The binary: from target/dist (what `cargo xtask dist` writes) to where the DaemonSet's
    // command runs it, which is also the image's entrypoint.
    let (from, source, destination) = final_stage
        .iter()
        .filter(|(keyword, _)| keyword == "COPY")
        .find_map(|(_, rest)| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.as_slice() {
                [from, source, destination] => Some((
                    from.strip_prefix("--from=")?.to_string(),
                    source.to_string(),
                    destination.to_string(),
                )),
                _ => None,
            }
        })
        .expect("COPY --from=STAGE the binary");
    assert!(source.ends_with("target/dist/memory-monitor"), "{source}");
    let documents = documents();
    let daemonset = of_kind(&documents, "DaemonSet");
    let container = &daemonset["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(strings(&container["command"]), [destination.as_str()]);
    let entrypoint = final_stage
        .iter()
        .find(|(keyword, _)| keyword == "ENTRYPOINT")
        .map(|(_, rest)| rest.as_str());
    assert_eq!(entrypoint, Some(format!("[\"{destination}\"]").as_str()));

    // Built on the Debian release it runs on (the glibc it links against is there), by a
    // toolchain the workspace accepts.
    let codename = |image: &str| {
        let tag = image.rsplit(':').next().unwrap_or_default().to_string();
        tag.rsplit('-')
            .find(|part| *part != "slim")
            .map(str::to_string)
    };
    assert!(image.contains("/debian:"), "a glibc base: {image}");
    let builder = stages
        .iter()
        .map(|&index| &instructions[index].1)
        .find(|stage| stage.ends_with(&format!(" AS {from}")))
        .unwrap_or_else(|| panic!("no stage named {from}"));
    let rust_image = builder.split_whitespace().next().unwrap();
    assert_eq!(
        codename(rust_image),
        codename(image),
        "{rust_image} / {image}"
    );
    let rust_version = rust_image
        .rsplit(':')
        .next()
        .and_then(|tag| tag.split('-').next())
        .unwrap();
    let version_of = |text: &str| -> Vec<u32> {
        text.split('.')
            .map(|n| n.parse().expect("a version"))
            .collect()
    };
    assert!(
        version_of(rust_version) >= version_of(&workspace_package("rust-version")),
        "{rust_image} is older than the workspace's rust-version"
    );

    // The DaemonSet runs the release the workspace is at.
    let reference = container["image"].as_str().unwrap();
    let (_, tag) = reference.rsplit_once(':').expect("a tagged image");
    assert_eq!(tag, workspace_package("version"), "{reference}");
}

#[test]
fn the_binary_accepts_the_container_command_line_and_the_rules() {
    let documents = documents();
    let daemonset = of_kind(&documents, "DaemonSet");
    let container = &daemonset["spec"]["template"]["spec"]["containers"][0];
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
