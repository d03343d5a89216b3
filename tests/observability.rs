//! The operator assets of `observability/`, checked with the real tools:
//! `promtool` accepts the scrape config and the rules, the rules' unit tests
//! pass, every PromQL expression of the Grafana dashboard and of the rules
//! parses and names only metric families snakepit exports, and a real
//! Prometheus server scraping a running snakepit answers the request counter
//! from its query API.
//!
//! promtool and prometheus come from the Debian package `prometheus`
//! (`.ci/run` installs it). Its own test binary: the metrics recorder is
//! process-global.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{add, showcase};
use snakepit::Snakepit;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Families that the metrics code adds alongside this test (issue 15): the
/// test accepts them before they appear in `actors/src/telemetry.rs`.
const NEW_FAMILIES: &[&str] = &[
    "snakepit_worker_rss_bytes",
    "snakepit_pool_in_flight",
    "snakepit_build_info",
];

/// Host process metrics (`process_cpu_seconds_total`, ...) come from the
/// `metrics-process` crate, not from our list of names.
const PROCESS_PREFIX: &str = "process_";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn prometheus_dir() -> PathBuf {
    root().join("observability").join("prometheus")
}

fn rules_file() -> PathBuf {
    prometheus_dir().join("snakepit.rules.yml")
}

fn dashboard_file() -> PathBuf {
    root()
        .join("observability")
        .join("grafana")
        .join("snakepit.json")
}

/// `tool` from PATH. Missing is a failure, in CI and locally alike: these
/// assets are only worth something if a real Prometheus accepts them.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
    {
        return found;
    }
    let where_ = if std::env::var_os("CI").is_some() {
        "CI is set, and .ci/run should have installed it"
    } else {
        "install it with `apt-get install prometheus` (the Debian package brings promtool and prometheus)"
    };
    panic!("{name} is not on PATH: {where_}");
}

/// Runs promtool with `args` in the repository root; its output on failure.
fn promtool(args: &[&str]) -> String {
    let out = Command::new(tool("promtool"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_accepts_the_scrape_config_and_its_rule_files() {
    let text = promtool(&["check", "config", "observability/prometheus/prometheus.yml"]);
    assert!(text.contains("1 rule files found"), "{text}");
}

#[test]
fn promtool_accepts_the_rules() {
    promtool(&[
        "check",
        "rules",
        "observability/prometheus/snakepit.rules.yml",
    ]);
}

#[test]
fn every_alert_has_unit_tests_and_they_pass() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(prometheus_dir().join("tests"))
        .expect("observability/prometheus/tests")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rule unit tests");
    let tests: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let tested: BTreeSet<&str> = tests
        .lines()
        .filter_map(|l| l.trim().strip_prefix("alertname:"))
        .map(str::trim)
        .collect();
    let rules = std::fs::read_to_string(rules_file()).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    assert!(!alerts.is_empty());
    let untested: Vec<&&str> = alerts.iter().filter(|a| !tested.contains(**a)).collect();
    assert!(
        untested.is_empty(),
        "alerts without a unit test: {untested:?}"
    );
    let unknown: Vec<&&str> = tested.iter().filter(|t| !alerts.contains(t)).collect();
    assert!(
        unknown.is_empty(),
        "tests of alerts that do not exist: {unknown:?}"
    );

    let mut args = vec!["test".to_string(), "rules".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    promtool(&args);
}

/// The metric families snakepit exports: the `"snakepit_..."` literals of
/// `actors/src/telemetry.rs` (the code's one list of names) and the families
/// being added with this test.
fn families() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = metric_consts().into_values().collect();
    assert!(
        names.contains("snakepit_requests_total") && names.len() > 20,
        "the metric names of actors/src/telemetry.rs: {names:?}"
    );
    names.extend(NEW_FAMILIES.iter().map(|s| s.to_string()));
    names
}

/// `NAME => "snakepit_..."` for each `pub const` of `actors/src/telemetry.rs`
/// whose value is a metric name.
fn metric_consts() -> std::collections::BTreeMap<String, String> {
    let src = std::fs::read_to_string(root().join("actors/src/telemetry.rs"))
        .expect("actors/src/telemetry.rs");
    src.split("pub const ")
        .skip(1)
        .filter_map(|item| {
            let item = &item[..item.find(';')?];
            let (name, rest) = item.split_once(':')?;
            let value = rest.split('"').nth(1)?;
            let is_metric = value.starts_with("snakepit_")
                && value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            is_metric.then(|| (name.trim().to_string(), value.to_string()))
        })
        .collect()
}

/// The families recorded with `histogram!` anywhere in `src/` or
/// `actors/src/`: only they have `_bucket`, `_sum` and `_count` series.
fn histograms() -> BTreeSet<String> {
    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let consts = metric_consts();
    let mut files = Vec::new();
    sources(&root().join("src"), &mut files);
    sources(&root().join("actors/src"), &mut files);
    let mut found = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for after in text.split("histogram!(").skip(1) {
            let after = after.trim_start();
            if let Some(rest) = after.strip_prefix("metric::") {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if let Some(value) = consts.get(&name) {
                    found.insert(value.clone());
                }
            } else if let Some(rest) = after.strip_prefix('"') {
                found.extend(rest.split('"').next().map(String::from));
            }
        }
    }
    assert!(
        found.contains("snakepit_request_duration_seconds"),
        "the histograms of the code: {found:?}"
    );
    found
}

/// The identifiers of a PromQL expression that name series: metric names
/// (`snakepit_...`, `process_...`) and recording rules (`snakepit:...`).
/// Strings, numbers and durations are skipped; label names and functions
/// never start with these prefixes.
fn series_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && c != '`' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if !c.is_ascii_digit()
                && (word.starts_with("snakepit_")
                    || word.starts_with("snakepit:")
                    || word.starts_with(PROCESS_PREFIX))
            {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The names in `exprs` that are neither a family, a series of a histogram
/// family (`_bucket`, `_sum`, `_count`), a process metric, nor one of
/// `records`.
fn unknown_names<'a>(
    exprs: impl IntoIterator<Item = &'a String>,
    records: &BTreeSet<String>,
) -> Vec<String> {
    let families = families();
    let histograms = histograms();
    let known = |name: &str| {
        families.contains(name)
            || records.contains(name)
            || name.starts_with(PROCESS_PREFIX)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|family| histograms.contains(family))
            })
    };
    let mut unknown: Vec<String> = exprs
        .into_iter()
        .flat_map(|e| series_names(e))
        .filter(|n| !known(n))
        .collect();
    unknown.sort();
    unknown.dedup();
    unknown
}

/// `(record names, every expr)` of the rules file: a line scan, enough for
/// the layout of snakepit.rules.yml (`expr:` inline or as a `|` block).
fn rules_exprs() -> (BTreeSet<String>, Vec<String>) {
    let text = std::fs::read_to_string(rules_file()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut records = BTreeSet::new();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        let indent = lines[i].len() - line.len();
        if let Some(name) = line.strip_prefix("- record:") {
            records.insert(name.trim().to_string());
        }
        if let Some(expr) = line.strip_prefix("expr:") {
            let expr = expr.trim();
            if expr == "|" || expr == ">" {
                let mut block = String::new();
                i += 1;
                while i < lines.len() {
                    let l = lines[i];
                    let deeper = l.len() - l.trim_start().len() > indent;
                    if !l.trim().is_empty() && !deeper {
                        break;
                    }
                    block.push_str(l.trim());
                    block.push('\n');
                    i += 1;
                }
                exprs.push(block);
                continue;
            }
            exprs.push(expr.to_string());
        }
        i += 1;
    }
    (records, exprs)
}

#[test]
fn the_rules_name_only_metrics_snakepit_exports() {
    let (records, exprs) = rules_exprs();
    assert!(exprs.len() > records.len(), "no alerts found: {exprs:?}");
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("snakepit_request_duration_seconds_bucket")),
        "the line scan missed expressions: {exprs:?}"
    );
    let unknown = unknown_names(&exprs, &records);
    assert!(
        unknown.is_empty(),
        "the rules name series snakepit does not export: {unknown:?}"
    );
}

/// Every `expr` of the dashboard (panels' targets) and every templating
/// query, with Grafana's variables replaced by what Prometheus would see.
fn dashboard_queries() -> (Vec<String>, Vec<String>) {
    let text =
        std::fs::read_to_string(dashboard_file()).expect("observability/grafana/snakepit.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    fn walk(v: &serde_json::Value, exprs: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(s)) => exprs.push(s.clone()),
                        _ => walk(v, exprs),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, exprs)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    walk(&dashboard["panels"], &mut exprs);
    let variables: Vec<&serde_json::Value> = dashboard["templating"]["list"]
        .as_array()
        .map(|l| l.iter().collect())
        .unwrap_or_default();
    let templating: Vec<String> = variables
        .iter()
        .filter_map(|v| match &v["query"] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(q) => {
                q.get("query").and_then(|q| q.as_str()).map(String::from)
            }
            _ => None,
        })
        .filter(|q| !q.is_empty() && q != "prometheus")
        .collect();
    let mut names: Vec<String> = variables
        .iter()
        .filter_map(|v| v["name"].as_str().map(String::from))
        .collect();
    // Longest first, so that `$pool` does not eat the start of `$pools`.
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let substitute = |e: &String| {
        let mut e = e
            .replace("$__rate_interval", "5m")
            .replace("${__rate_interval}", "5m")
            .replace("$__interval", "1m")
            .replace("${__interval}", "1m")
            .replace("$__range", "1h");
        for n in &names {
            e = e
                .replace(&format!("${{{n}}}"), ".+")
                .replace(&format!("${n}"), ".+");
        }
        assert!(!e.contains('$'), "an unknown Grafana variable in {e}");
        e
    };
    (exprs.iter().map(substitute).collect(), templating)
}

#[test]
fn every_dashboard_query_parses_and_names_only_metrics_snakepit_exports() {
    let (exprs, templating) = dashboard_queries();
    assert!(exprs.len() >= 10, "the dashboard's queries: {exprs:?}");

    // promtool parses PromQL when it checks rules: each query becomes one.
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: |\n"
        ));
        for line in e.lines() {
            rules.push_str(&format!("          {line}\n"));
        }
    }
    let path = dir.path().join("dashboard.rules.yml");
    std::fs::write(&path, &rules).unwrap();
    let out = Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "a dashboard query does not parse:\n{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let (records, _) = rules_exprs();
    let all: Vec<String> = exprs.iter().chain(&templating).cloned().collect();
    let unknown = unknown_names(&all, &records);
    assert!(
        unknown.is_empty(),
        "the dashboard names series that neither snakepit nor snakepit.rules.yml provides: {unknown:?}"
    );
}

#[test]
fn the_name_scan_sees_metrics_and_skips_strings_and_durations() {
    let names = series_names(
        r#"sum by (le) (rate(snakepit_a_bucket{pool=~"snakepit_not"}[5m] offset 1h)) / snakepit:b:rate5m + process_open_fds"#,
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        names,
        ["process_open_fds", "snakepit:b:rate5m", "snakepit_a_bucket"]
    );
    let records = BTreeSet::from(["snakepit:b:rate5m".to_string()]);
    assert_eq!(
        unknown_names(
            &[
                "snakepit_request_duration_seconds_bucket + snakepit_requests_total_bucket"
                    .to_string(),
                "snakepit:b:rate5m + snakepit:c".to_string(),
            ],
            &records
        ),
        ["snakepit:c", "snakepit_requests_total_bucket"]
    );
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap()
}

/// Percent-encodes a query string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET over HTTP/1.0 (no chunked answer to decode); `None` while the
/// server is not listening yet.
async fn http_get(addr: SocketAddr, path: &str) -> Option<(String, String)> {
    let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    conn.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.to_string(), body.to_string()))
}

/// The sum of an instant query's sample values, `None` when it has none.
async fn query(prometheus: SocketAddr, promql: &str) -> Option<f64> {
    let (head, body) = http_get(
        prometheus,
        &format!("/api/v1/query?query={}", encode(promql)),
    )
    .await?;
    // Prometheus answers 503 until it has started: not yet, like no answer.
    if head.starts_with("HTTP/1.0 503") || head.starts_with("HTTP/1.1 503") {
        return None;
    }
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{promql}: {head}\n{body}"
    );
    let answer: serde_json::Value =
        serde_json::from_str(&body).expect("the query API answers JSON");
    assert_eq!(answer["status"], "success", "{body}");
    let result = answer["data"]["result"].as_array()?;
    if result.is_empty() {
        return None;
    }
    Some(
        result
            .iter()
            .map(|s| s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
            .sum(),
    )
}

/// A child process ended (and reaped) when dropped, also when the test fails.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_a_running_snakepit() {
    const CALLS: i64 = 5;
    let prometheus_bin = tool("prometheus");
    let metrics = free_addr();
    let sp = Snakepit::builder()
        .pool(showcase("obs", 1))
        .metrics_addr(metrics)
        .start()
        .await
        .expect("runtime starts");
    let pool = sp.pool("obs").unwrap().clone();
    for i in 0..CALLS {
        assert_eq!(add(&pool, i, 1).await, i + 1);
    }

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n  - job_name: snakepit\n    static_configs:\n      - targets: ['{metrics}']\n",
        rules = rules_file().display()
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let web = free_addr();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let server = Reaped(
        Command::new(&prometheus_bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus starts"),
    );

    // The counter as Prometheus scraped it, and a recording rule of
    // snakepit.rules.yml evaluated on it.
    let requests = r#"sum(snakepit_requests_total{pool="obs",outcome="ok"})"#;
    let recorded = r#"sum(snakepit:requests:rate5m{pool="obs",outcome="ok"})"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut seen, mut rate) = (None, None);
    while Instant::now() < deadline {
        seen = query(web, requests).await;
        rate = query(web, recorded).await;
        if seen.is_some_and(|n| n >= CALLS as f64) && rate.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = log_of(dir.path());
    drop(server);
    assert!(
        seen.is_some_and(|n| n >= CALLS as f64),
        "Prometheus never reported {CALLS} requests (last: {seen:?}); its log:\n{log}"
    );
    assert!(
        rate.is_some_and(|r| r >= 0.0),
        "the recording rule snakepit:requests:rate5m never had a value; Prometheus' log:\n{log}"
    );
    sp.shutdown().await;
}
