//! The deployment files under `deploy/`: the Kubernetes manifests pass
//! `kubernetes-validate --strict`, the systemd units pass
//! `systemd-analyze verify`, and both agree with the binary and with each
//! other (drain grace within the termination grace, probes on the health
//! port, the autoscaler aimed at the agents, every manifest in the
//! kustomization).
//!
//! kubernetes-validate (and PyYAML, with which the manifests are read here)
//! comes from a venv this test keeps under the target directory, made once
//! with the Python the other suites use and reused while its pin holds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

/// The kubernetes-validate release the venv holds.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

/// Where the manifests live, relative to the package root.
const K8S_DIR: &str = "deploy/kubernetes";

/// Where the units live, relative to the package root.
const SYSTEMD_DIR: &str = "deploy/systemd";

/// The path the units (and the image) install the binary at.
const INSTALLED_BINARY: &str = "/usr/local/bin/snakepit";

/// The agent's drain grace when `--drain-grace-ms` is not given.
const DEFAULT_DRAIN_GRACE_MS: u64 = 30_000;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `*.yaml` files of `deploy/kubernetes`, by name, sorted as a shell
/// glob would list them.
fn manifest_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join(K8S_DIR))
        .expect("read deploy/kubernetes")
        .map(|e| e.expect("a directory entry").file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no manifests in {K8S_DIR}");
    names
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` and returns its output, panicking with `what` when it cannot
/// start or fails.
fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {cmd:?} failed ({}):\n{}",
        out.status,
        output_text(&out)
    );
    out
}

/// The interpreter of the venv holding kubernetes-validate, made (under a
/// lock, for concurrent test runs) when missing or holding another pin.
fn tools_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let venv = home.join("deploy-tools-venv");
        let python = venv.join("bin").join("python");
        let stamp = venv.join(".deploy-tools-stamp");
        let fresh = || std::fs::read_to_string(&stamp).is_ok_and(|s| s == KUBERNETES_VALIDATE);
        std::fs::create_dir_all(&home).expect("create the target tmp dir");
        let lock = std::fs::File::create(home.join("deploy-tools-venv.lock")).expect("lock file");
        lock.lock().expect("lock the tools venv");
        if !(python.exists() && fresh()) {
            let base = snakepit::python_env::PythonEnvConfig::default().base_python;
            let _ = std::fs::remove_dir_all(&venv);
            run_ok(
                Command::new(&base).arg("-m").arg("venv").arg(&venv),
                "create the tools venv",
            );
            run_ok(
                Command::new(&python).args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    KUBERNETES_VALIDATE,
                ]),
                "install kubernetes-validate (network access to the package index is needed once)",
            );
            std::fs::write(&stamp, KUBERNETES_VALIDATE).expect("write the venv stamp");
        }
        python
    })
}

/// Every document of every manifest, by file name, read with PyYAML (the
/// parser kubernetes-validate uses) and handed over as JSON.
fn manifests() -> &'static BTreeMap<String, Vec<Value>> {
    static DOCS: OnceLock<BTreeMap<String, Vec<Value>>> = OnceLock::new();
    DOCS.get_or_init(|| {
        const TO_JSON: &str = "import json, os, sys, yaml\n\
            print(json.dumps({os.path.basename(p): [d for d in yaml.safe_load_all(open(p)) if d]\n\
                              for p in sys.argv[1:]}))";
        let mut cmd = Command::new(tools_python());
        cmd.args(["-c", TO_JSON]).current_dir(root());
        for name in manifest_names() {
            cmd.arg(format!("{K8S_DIR}/{name}"));
        }
        let out = run_ok(&mut cmd, "read the manifests");
        serde_json::from_slice(&out.stdout).expect("the manifests as JSON")
    })
}

/// The one document of kind `kind` whose name is `name`.
fn object(kind: &str, name: &str) -> &'static Value {
    let found: Vec<&Value> = manifests()
        .values()
        .flatten()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} {name}, found {found:?}"
    );
    found[0]
}

/// The Deployment whose container runs `snakepit <command>`, and that
/// container.
fn deployment_running(command: &str) -> (&'static Value, &'static Value) {
    let found: Vec<(&Value, &Value)> = manifests()
        .values()
        .flatten()
        .filter(|d| d["kind"] == "Deployment")
        .flat_map(|d| {
            containers(d)
                .iter()
                .filter(|c| c["args"][0] == command)
                .map(move |c| (d, c))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one Deployment running `snakepit {command}`"
    );
    found[0]
}

fn containers(deployment: &Value) -> &Vec<Value> {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("a pod template with containers")
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The values given to `flag` in `args`, as `--flag value` or `--flag=value`.
fn flag_values<'a>(args: &[&'a str], flag: &str) -> Vec<&'a str> {
    let mut found = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if *arg == flag {
            found.extend(rest.next().copied());
        } else if let Some(v) = arg.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            found.push(v);
        }
    }
    found
}

/// The single value of `flag` in `args`, if given.
fn flag<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    let found = flag_values(args, flag);
    assert!(found.len() <= 1, "{flag} given twice in {args:?}");
    found.first().copied()
}

/// The agent's `--drain-grace-ms` in `args`, or its default.
fn drain_grace_ms(args: &[&str]) -> u64 {
    flag(args, "--drain-grace-ms").map_or(DEFAULT_DRAIN_GRACE_MS, |v| {
        v.parse().expect("--drain-grace-ms in milliseconds")
    })
}

/// The port of `HOST:PORT` (or of a URL ending in one).
fn port_of(addr: &str) -> u64 {
    addr.trim_end_matches('/')
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// A container port given as a number or by name.
fn container_port(container: &Value, port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = port.as_str().expect("a port number or name");
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

/// Whether `path` lies in one of the container's volume mounts.
fn mounted(container: &Value, path: &str) -> bool {
    container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["mountPath"].as_str())
        .any(|dir| Path::new(path).starts_with(dir))
}

/// Seconds a `preStop` hook waits before SIGTERM (an `exec` of `sleep N`
/// or the `sleep` action), 0 without one.
fn pre_stop_seconds(container: &Value) -> u64 {
    let hook = &container["lifecycle"]["preStop"];
    if let Some(s) = hook["sleep"]["seconds"].as_u64() {
        return s;
    }
    match strings(&hook["exec"]["command"]).as_slice() {
        [] => 0,
        ["sleep", n] => n.parse().expect("sleep seconds"),
        other => panic!("a preStop hook whose length is unknown: {other:?}"),
    }
}

/// Whether every label of `wanted` (a Service's selector, or a
/// `matchLabels`) is on the Deployment's pod template.
fn selects(wanted: &Value, deployment: &Value) -> bool {
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let wanted = wanted.as_object().expect("labels to select by");
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels[k] == *v)
}

/// `key` of the ConfigMap `snakepit-config`, parsed as TOML.
fn config_toml(key: &str) -> toml::Table {
    let text = object("ConfigMap", "snakepit-config")["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in the ConfigMap"));
    text.parse()
        .unwrap_or_else(|e| panic!("{key} is not TOML: {e}"))
}

#[test]
fn manifests_pass_strict_kubernetes_validation() {
    let names = manifest_names();
    let mut cmd = Command::new(tools_python());
    cmd.args(["-m", "kubernetes_validate", "--strict"])
        .current_dir(root());
    for name in &names {
        cmd.arg(format!("{K8S_DIR}/{name}"));
    }
    let out = run_ok(&mut cmd, "kubernetes-validate --strict");
    let text = output_text(&out);
    println!("{text}");
    for name in &names {
        let file = format!("{K8S_DIR}/{name}");
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some(file.as_str()))
            .collect();
        if name == "kustomization.yaml" {
            // Not an API object: kubernetes-validate has no schema for it
            // and says so, without failing.
            assert!(
                lines.len() == 1
                    && lines[0].starts_with("WARN ")
                    && lines[0].contains("Kustomization"),
                "{file}: {lines:?}"
            );
            continue;
        }
        let documents = manifests()[name].len();
        let passed = lines
            .iter()
            .filter(|l| l.starts_with("INFO ") && l.contains(" passed for resource "))
            .count();
        assert!(documents > 0, "{file} holds no object");
        assert_eq!(
            (passed, lines.len()),
            (documents, documents),
            "{file}: every one of its {documents} objects must pass, and nothing else be said: {lines:?}"
        );
    }
}

#[test]
fn kustomization_lists_every_manifest() {
    let kustomization = &manifests()["kustomization.yaml"][0];
    assert_eq!(kustomization["kind"], "Kustomization");
    let listed: BTreeSet<&str> = strings(&kustomization["resources"]).into_iter().collect();
    let present: BTreeSet<String> = manifest_names()
        .into_iter()
        .filter(|n| n != "kustomization.yaml")
        .collect();
    let present: BTreeSet<&str> = present.iter().map(String::as_str).collect();
    assert_eq!(listed, present);
}

#[test]
fn agents_drain_within_their_termination_grace() {
    let (deployment, agent) = deployment_running("agent");
    let args = strings(&agent["args"]);
    let drain_ms = drain_grace_ms(&args);
    let pre_stop = pre_stop_seconds(agent);
    let grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30);
    assert!(
        grace * 1000 > pre_stop * 1000 + drain_ms,
        "terminationGracePeriodSeconds {grace} leaves no margin after the preStop \
         pause ({pre_stop} s) and the drain grace ({drain_ms} ms)"
    );
}

#[test]
fn agent_probes_use_the_health_port() {
    let (_, agent) = deployment_running("agent");
    let args = strings(&agent["args"]);
    let health = port_of(flag(&args, "--health-addr").expect("--health-addr"));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &agent[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(container_port(agent, &get["port"]), health, "{probe} port");
    }
}

#[test]
fn agents_reach_the_host_through_its_service() {
    let (_, agent) = deployment_running("agent");
    let (host_deployment, host) = deployment_running("serve");
    let args = strings(&agent["args"]);
    let connect = flag(&args, "--connect").expect("--connect");
    let authority = connect
        .split_once("://")
        .map_or(connect, |(_, rest)| rest)
        .trim_end_matches('/');
    let (service_name, port) = authority.rsplit_once(':').expect("HOST:PORT in --connect");
    let service = object("Service", service_name);
    assert!(
        selects(&service["spec"]["selector"], host_deployment),
        "Service {service_name} does not select the host's pods"
    );
    // The Service's port for the agents leads to the host's [remote] listen.
    let service_port = service["spec"]["ports"]
        .as_array()
        .expect("Service ports")
        .iter()
        .find(|p| p["port"].as_u64() == port.parse().ok())
        .unwrap_or_else(|| panic!("Service {service_name} has no port {port}"));
    let target = container_port(host, &service_port["targetPort"]);
    let host_toml = config_toml("host.toml");
    let remote_listen = host_toml["remote"]["listen"]
        .as_str()
        .expect("[remote] listen");
    assert_eq!(
        target,
        port_of(remote_listen),
        "agents' port vs [remote] listen"
    );
    // The host expects the agents' pool, as a remote pool.
    let pool = flag(&args, "--pool").expect("--pool");
    let pools = host_toml["pools"].as_array().expect("[[pools]]");
    assert!(
        pools
            .iter()
            .any(|p| p["name"].as_str() == Some(pool) && p["remote"].as_bool() == Some(true)),
        "host.toml has no remote pool {pool}"
    );
    let agent_toml = config_toml("agent.toml");
    assert!(
        agent_toml["pools"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"].as_str() == Some(pool))),
        "agent.toml does not configure pool {pool}"
    );
}

#[test]
fn the_configmaps_tomls_are_configurations_snakepit_accepts() {
    use snakepit::config::Config;
    for key in ["host.toml", "agent.toml"] {
        let text = object("ConfigMap", "snakepit-config")["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in the ConfigMap"))
            .to_string();
        let config = Config::parse(&text).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert!(!config.pools.is_empty(), "{key} has no pool");
        if key == "host.toml" {
            assert!(config.pools.iter().all(|p| p.remote), "{key}: {config:?}");
            // The Secret's file is not here: a stand-in with a token.
            assert!(
                config.remote.token_file.is_some(),
                "{key}: agents need a token"
            );
            let dir = tempfile::tempdir().unwrap();
            let token = dir.path().join("token");
            std::fs::write(&token, "t").unwrap();
            let mut remote = config.remote.clone();
            remote.token_file = Some(token);
            let attach = snakepit::AttachConfig::from_section(&remote)
                .unwrap_or_else(|e| panic!("{key} [remote]: {e}"))
                .expect("[remote] listen");
            let err = attach.validate().err();
            assert!(err.is_none(), "{key} [remote]: {err:?}");
        }
    }
}

#[test]
fn files_named_in_args_and_configs_are_mounted() {
    let (_, agent) = deployment_running("agent");
    let (_, host) = deployment_running("serve");
    for container in [agent, host] {
        let args = strings(&container["args"]);
        for name in ["--config", "--token-file", "--ca", "--cert", "--key"] {
            for path in flag_values(&args, name) {
                assert!(mounted(container, path), "{name} {path} is not mounted");
            }
        }
    }
    let host_toml = config_toml("host.toml");
    for section in ["server", "remote"] {
        for key in ["token_file", "tls_cert", "tls_key", "client_ca"] {
            if let Some(path) = host_toml[section].get(key).and_then(|v| v.as_str()) {
                assert!(
                    mounted(host, path),
                    "[{section}] {key} {path} is not mounted"
                );
            }
        }
    }
}

#[test]
fn host_metrics_are_served_where_the_service_points() {
    let (_, host) = deployment_running("serve");
    let args = strings(&host["args"]);
    let metrics = port_of(flag(&args, "--metrics-addr").expect("--metrics-addr"));
    let service = object("Service", "snakepit-host");
    let ports = service["spec"]["ports"].as_array().expect("Service ports");
    let metrics_port = ports
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("a metrics port");
    assert_eq!(container_port(host, &metrics_port["targetPort"]), metrics);
    let grpc_port = ports
        .iter()
        .find(|p| p["name"] == "grpc")
        .expect("a grpc port");
    let listen = config_toml("host.toml")["server"]["listen"]
        .as_str()
        .map(port_of)
        .expect("[server] listen");
    assert_eq!(container_port(host, &grpc_port["targetPort"]), listen);
}

#[test]
fn autoscaler_and_disruption_budget_cover_the_agents() {
    let (deployment, agent) = deployment_running("agent");
    let name = deployment["metadata"]["name"].as_str().expect("a name");
    let pool = flag(&strings(&agent["args"]), "--pool").expect("--pool");
    let hpa = object("HorizontalPodAutoscaler", name);
    let target = &hpa["spec"]["scaleTargetRef"];
    assert_eq!(
        (target["kind"].as_str(), target["name"].as_str()),
        (Some("Deployment"), Some(name))
    );
    let metric = hpa["spec"]["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|m| {
            let source = m["type"].as_str().map(|t| {
                let mut key = t.to_string();
                key[..1].make_ascii_lowercase();
                key
            })?;
            Some(&m[source.as_str()]["metric"])
        })
        .expect("a metric");
    assert_eq!(metric["name"], "snakepit_queue_depth");
    assert_eq!(metric["selector"]["matchLabels"]["pool"], pool);
    let pdbs: Vec<&Value> = manifests()
        .values()
        .flatten()
        .filter(|d| d["kind"] == "PodDisruptionBudget")
        .filter(|d| selects(&d["spec"]["selector"]["matchLabels"], deployment))
        .collect();
    assert_eq!(pdbs.len(), 1, "one PodDisruptionBudget for the agents");
}

/// The units, their ExecStart pointed at the built binary (verify refuses a
/// missing executable), in a directory of their own.
fn units_for_verify(dir: &Path) -> Vec<PathBuf> {
    let built = env!("CARGO_BIN_EXE_snakepit");
    let mut units = Vec::new();
    for entry in std::fs::read_dir(root().join(SYSTEMD_DIR)).expect("read deploy/systemd") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|e| e != "service") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a unit");
        let exec = unit_setting(&text, "ExecStart").expect("ExecStart");
        assert!(
            exec.starts_with(&format!("{INSTALLED_BINARY} ")),
            "{}: ExecStart must run {INSTALLED_BINARY}",
            path.display()
        );
        let copy = dir.join(path.file_name().expect("a file name"));
        std::fs::write(&copy, text.replace(INSTALLED_BINARY, built)).expect("write a unit");
        units.push(copy);
    }
    units.sort();
    assert_eq!(units.len(), 2, "the host and agent units");
    units
}

/// The value of the last `key=` line of a unit.
fn unit_setting<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .next_back()
}

#[test]
fn systemd_units_verify() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing, and CI is set"
        );
        println!("skipped: no systemd-analyze on this machine");
        return;
    };
    let dir = tempfile::tempdir().expect("a temp dir");
    let units = units_for_verify(dir.path());
    let out = run_ok(
        Command::new(analyze)
            .args(["verify", "--man=no", "--recursive-errors=no"])
            .args(&units),
        "systemd-analyze verify",
    );
    let text = output_text(&out);
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("snakepit-host") || l.contains("snakepit-agent"))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify:\n{text}");
}

#[test]
fn agent_unit_waits_out_the_drain() {
    let text = std::fs::read_to_string(root().join(SYSTEMD_DIR).join("snakepit-agent.service"))
        .expect("read the agent unit");
    let exec = unit_setting(&text, "ExecStart").expect("ExecStart");
    let args: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(args.get(1), Some(&"agent"));
    let drain_ms = drain_grace_ms(&args);
    let stop_s: u64 = unit_setting(&text, "TimeoutStopSec")
        .expect("TimeoutStopSec")
        .parse()
        .expect("TimeoutStopSec in seconds");
    assert!(
        stop_s * 1000 > drain_ms,
        "TimeoutStopSec={stop_s} leaves no margin after the drain grace ({drain_ms} ms)"
    );
    // SIGTERM must reach the agent alone; the workers finish their calls.
    assert_eq!(unit_setting(&text, "KillSignal"), Some("SIGTERM"));
    assert_eq!(unit_setting(&text, "KillMode"), Some("mixed"));
}
