//! The Kubernetes manifests in `deploy/`: they parse, they give the DaemonSet what eBPF mode
//! needs (the same capabilities as the systemd unit, the host's PIDs and mounts), Prometheus
//! finds the metrics where they are served, and the binary accepts the container's command
//! line with the ConfigMap's rules.

use std::path::{Path, PathBuf};
use std::process::Command;

use memory_monitor_tests::scrape::{get, served_at};
use memory_monitor_tests::{Monitor, bin, unique_name};
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
    // One stage, on an empty base unless asked for another: the static binary needs nothing.
    let froms: Vec<&String> = instructions
        .iter()
        .filter(|(keyword, _)| keyword == "FROM")
        .map(|(_, rest)| rest)
        .collect();
    assert_eq!(froms, ["${BASE}"], "{text}");
    assert!(
        instructions.contains(&("ARG".to_string(), "BASE=scratch".to_string())),
        "{text}"
    );

    // The binary: from the build context (`target/dist`, what `cargo xtask dist` writes) to
    // where the DaemonSet's command runs it, which is also the image's entrypoint.
    let copies: Vec<Vec<&str>> = instructions
        .iter()
        .filter(|(keyword, _)| keyword == "COPY")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .collect();
    let [copy] = copies.as_slice() else {
        panic!("one COPY: {copies:?}")
    };
    let [source, destination] = copy.as_slice() else {
        panic!("COPY SOURCE DESTINATION: {copy:?}")
    };
    assert_eq!(*source, "memory-monitor");
    let documents = documents();
    let daemonset = of_kind(&documents, "DaemonSet");
    let container = &daemonset["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(strings(&container["command"]), [*destination]);
    let entrypoint = instructions
        .iter()
        .find(|(keyword, _)| keyword == "ENTRYPOINT")
        .map(|(_, rest)| rest.as_str());
    assert_eq!(entrypoint, Some(format!("[\"{destination}\"]").as_str()));

    // The DaemonSet runs the release the workspace is at.
    let reference = container["image"].as_str().unwrap();
    let (_, tag) = reference.rsplit_once(':').expect("a tagged image");
    assert_eq!(tag, workspace_package("version"), "{reference}");
}

/// The Kubernetes release whose API the manifests are checked against: the oldest the
/// README names (deploy/README.md, "Requirements"), and the newest kubernetes-validate knows.
const KUBERNETES: [&str; 2] = ["1.30", "1.37"];

#[test]
fn every_manifest_passes_the_kubernetes_api_schemas() {
    let readme = std::fs::read_to_string(deploy_dir().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("Kubernetes {}", KUBERNETES[0])),
        "deploy/README.md names the oldest Kubernetes the manifests are checked against"
    );
    let manifests: Vec<PathBuf> = ["memory-monitor.yaml", "monitoring.yaml"]
        .iter()
        .map(|file| deploy_dir().join(file))
        .collect();
    for version in KUBERNETES {
        let output = Command::new("kubernetes-validate")
            .args(["--strict", "--kubernetes-version", version])
            .args(&manifests)
            .output()
            .expect("kubernetes-validate (cargo xtask setup installs it from PyPI)");
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        // prometheus-operator's kinds are not in the API's schemas: they are said to be
        // skipped, and checked below instead; every other object must pass.
        let objects = documents().len();
        let passed = text.matches(" passed for resource ").count();
        let custom = text.matches("monitoring.coreos.com").count();
        assert!(
            output.status.success() && passed + 2 == objects && custom >= 2,
            "Kubernetes {version}: {passed} of {objects} passed:\n{text}"
        );
    }
}

/// The metrics port is unauthenticated: a NetworkPolicy lets only the metrics port of the
/// DaemonSet's pods be reached, and only from a selected source (Prometheus), not every pod.
#[test]
fn only_prometheus_may_reach_the_metrics_port() {
    let documents = documents();
    let policy = of_kind(&documents, "NetworkPolicy");
    let daemonset = of_kind(&documents, "DaemonSet");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        daemonset["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        policy["metadata"]["namespace"],
        daemonset["metadata"]["namespace"]
    );
    assert_eq!(strings(&policy["spec"]["policyTypes"]), ["Ingress"]);
    let ingress = policy["spec"]["ingress"].as_vec().expect("ingress rules");
    assert_eq!(ingress.len(), 1);
    let ports = ingress[0]["ports"].as_vec().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["port"].as_str(), Some("metrics"));
    let sources = ingress[0]["from"].as_vec().expect("a source, not everyone");
    for source in sources {
        assert!(
            !source["namespaceSelector"]["matchLabels"].is_badvalue()
                && !source["podSelector"]["matchLabels"].is_badvalue(),
            "each source names a namespace and its pods: {source:?}"
        );
    }
}

/// The PrometheusRule's groups, as a Prometheus rule file.
fn rule_file(documents: &[Yaml]) -> String {
    let rule = of_kind(documents, "PrometheusRule");
    let mut out = String::new();
    let mut emitter = yaml_rust2::YamlEmitter::new(&mut out);
    emitter.dump(&rule["spec"]).unwrap();
    out
}

#[test]
fn the_alerts_are_prometheus_rules_promtool_accepts() {
    let documents = documents();
    let file = std::env::temp_dir().join(format!("{}.rules.yaml", unique_name("mmd-pr")));
    std::fs::write(&file, rule_file(&documents)).unwrap();
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool (cargo xtask setup)");
    std::fs::remove_file(&file).unwrap();
    assert!(output.status.success(), "{output:?}");

    // The guide's alerts, each a rule.
    let guide = std::fs::read_to_string(deploy_dir().join("../docs/guide.md")).unwrap();
    let rules = &of_kind(&documents, "PrometheusRule")["spec"]["groups"][0]["rules"];
    let expressions: Vec<String> = rules
        .as_vec()
        .unwrap()
        .iter()
        .map(|rule| rule["expr"].as_str().unwrap().to_string())
        .collect();
    let section = guide
        .split("A few alerts worth having")
        .nth(1)
        .expect("the guide's alerts");
    let section = &section[..section.find("\n\n").unwrap_or(section.len())];
    let alerts = section.split('`').skip(1).step_by(2);
    for alert in alerts.filter(|quoted| quoted.contains("memory_monitor_")) {
        assert!(
            expressions.iter().any(|expr| expr == alert),
            "{alert} is not a rule: {expressions:?}"
        );
    }

    // The ServiceMonitor scrapes the headless Service's port, which is the container's.
    let service = of_kind(&documents, "Service");
    assert_eq!(service["spec"]["clusterIP"].as_str(), Some("None"));
    let monitor = of_kind(&documents, "ServiceMonitor");
    let endpoint = &monitor["spec"]["endpoints"][0];
    let port = endpoint["port"].as_str().unwrap();
    assert_eq!(service["spec"]["ports"][0]["name"].as_str(), Some(port));
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"].as_str(),
        Some(port)
    );
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
    let labels = &of_kind(&documents, "DaemonSet")["spec"]["template"]["metadata"]["labels"];
    for selector in [
        &service["spec"]["selector"],
        &monitor["spec"]["selector"]["matchLabels"],
    ] {
        for (key, value) in selector.as_hash().unwrap() {
            assert_eq!(&labels[key.as_str().unwrap()], value, "{selector:?}");
        }
    }
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

/// The metric names in `text`: the monitor's own (`memory_monitor_…`) and the standard
/// `process_…` ones it exports about itself.
fn metric_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = ["memory_monitor_", "process_"]
        .into_iter()
        .flat_map(|prefix| {
            text.split(prefix).skip(1).map(move |rest| {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                format!("{prefix}{name}")
            })
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_metric_the_dashboard_and_the_alerts_query_is_in_a_real_scrape() {
    let dashboard = std::fs::read_to_string(deploy_dir().join("grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("JSON");
    let mut queries = String::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            queries += target["expr"].as_str().expect("a query");
            queries.push('\n');
        }
    }
    let from_dashboard = metric_names(&queries);
    for wanted in [
        "memory_monitor_watched_processes",
        "memory_monitor_breaches_total",
        "memory_monitor_oom_kills_total",
        "memory_monitor_warnings_total",
        "memory_monitor_leaks_suspected_total",
        "memory_monitor_leak_time_to_limit_seconds",
        "memory_monitor_pressure_episodes_total",
        "memory_monitor_signals_total",
        "memory_monitor_lost_kernel_events_total",
        "memory_monitor_profile_writes_total",
        "memory_monitor_mode",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(
            from_dashboard.iter().any(|name| name == wanted),
            "the dashboard shows no {wanted}"
        );
    }
    let mut names = from_dashboard;
    names.extend(metric_names(&rule_file(&documents())));
    names.sort();
    names.dedup();

    // A monitor with a rule that profiles, follows leak trends and acts on pressure, as the
    // DaemonSet's could.
    let dir = std::env::temp_dir().join(unique_name("mmd-prof"));
    let rules = format!(
        "[[rule]]\nname = \"app\"\nprefix = \"{}\"\nmax-memory = \"1G\"\nleak-horizon = \"6h\"\nprofile-dir = \"{}\"\non-pressure = \"some:150ms/2s\"\n",
        unique_name("mmd-app"),
        dir.display()
    );
    let file = std::env::temp_dir().join(format!("{}.toml", unique_name("mmd-rl")));
    std::fs::write(&file, rules).unwrap();
    let config = file.display().to_string();
    let mut monitor = Monitor::start(&[
        "--mode",
        "poll",
        "--config",
        &config,
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    let address = served_at(&mut monitor);
    let (status, scraped) = get(&address, "/metrics");
    assert!(status.contains("200"), "{status}");
    // Exported only in eBPF mode with --bpf-stats (actions::metrics scrapes them there).
    let only_with_bpf_stats = [
        "memory_monitor_bpf_program_runs_total",
        "memory_monitor_bpf_program_run_seconds_total",
    ];
    for name in names
        .iter()
        .filter(|name| !only_with_bpf_stats.contains(&name.as_str()))
    {
        let present = scraped.lines().any(|line| {
            line.strip_prefix(name.as_str())
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        });
        assert!(present, "{name} is queried but not scraped:\n{scraped}");
    }
    assert!(monitor.stop().success());
    std::fs::remove_file(&file).unwrap();
}
