//! What an operator scrapes: `/metrics` passes `promtool check metrics`,
//! every family has HELP text and is a counter, gauge or histogram (never a
//! summary), the families alerts watch exist at zero from pool start, and
//! `/healthz`, `/readyz` and 404 answer as documented. Also the JSON log
//! format. Its own test binary: the metrics recorder is process-global, so
//! one test starts the one endpoint.

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{add, fixture_pool, http_get, metric_sample, showcase};
use snakepit::{Call, Snakepit};

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap()
}

/// Families by `# TYPE` line: name and type.
fn families(body: &str) -> Vec<(String, String)> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.trim().to_string()))
        .collect()
}

/// `promtool check metrics` over `body`: exits 0 and says nothing.
fn promtool_check(body: &str) {
    let promtool = std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("promtool"))
                .find(|p| p.is_file())
        })
        .expect(
            "promtool is not on PATH: install it (`apt-get install -y prometheus`, \
             as .ci/run does) to check the metrics endpoint",
        );
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {:?}\n{said}\n--- /metrics:\n{body}",
        out.status
    );
}

/// Polls `/metrics` until `pred` holds on it.
async fn metrics_until(addr: SocketAddr, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = http_get(addr, "/metrics").await;
        assert_eq!(code, 200);
        if pred(&body) {
            return body;
        }
        assert!(Instant::now() < until, "{what} never showed:\n{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_serves_checked_metrics_health_and_readiness() {
    let addr = free_addr();
    let sp = Snakepit::builder()
        .pool(showcase("e", 2))
        .pool(fixture_pool("traced", "traced.TracedAdapter", 1))
        .metrics_addr(addr)
        .start()
        .await
        .expect("runtime starts");

    // Right after start, before any call.
    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    promtool_check(&body);
    let zero = |metric: &str, labels: &[&str]| {
        assert_eq!(
            metric_sample(&body, metric, labels),
            Some(0.0),
            "{metric}{labels:?} should exist at 0 from pool start:\n{body}"
        );
    };
    for pool in [r#"pool="e""#, r#"pool="traced""#] {
        zero("snakepit_worker_restarts_total", &[pool]);
        zero("snakepit_heartbeats_missed_total", &[pool]);
        zero("snakepit_pool_degradations_total", &[pool]);
        zero("snakepit_request_retries_total", &[pool]);
        zero("snakepit_request_retries_withheld_total", &[pool]);
        zero("snakepit_host_calls_rejected_total", &[pool]);
        zero("snakepit_pool_degraded", &[pool]);
        zero("snakepit_queue_depth", &[pool]);
        zero("snakepit_pool_in_flight", &[pool]);
        for cause in ["crashed", "unresponsive", "startup_failed", "recycled"] {
            zero(
                "snakepit_worker_exits_total",
                &[pool, &format!(r#"cause="{cause}""#)],
            );
        }
        for reason in ["unresponsive", "startup_timeout", "drain_timeout"] {
            zero(
                "snakepit_worker_kills_total",
                &[pool, &format!(r#"reason="{reason}""#)],
            );
        }
        for reason in ["ttl", "max_requests", "memory"] {
            zero(
                "snakepit_worker_recycles_total",
                &[pool, &format!(r#"reason="{reason}""#)],
            );
        }
        for reason in ["saturated", "timeout"] {
            zero(
                "snakepit_queue_rejections_total",
                &[pool, &format!(r#"reason="{reason}""#)],
            );
        }
    }
    for outcome in snakepit::telemetry::REGISTERED_OUTCOMES {
        zero(
            "snakepit_requests_total",
            &[
                r#"pool="e""#,
                r#"tool="add""#,
                &format!(r#"outcome="{outcome}""#),
            ],
        );
    }
    for source in ["manual", "ttl", "dropped"] {
        zero(
            "snakepit_session_cleanup_errors_total",
            &[&format!(r#"source="{source}""#)],
        );
    }
    zero("snakepit_orphans_reaped_total", &[]);
    zero("snakepit_sessions_active", &[]);
    assert_eq!(
        metric_sample(&body, "snakepit_workers_up", &[r#"pool="e""#]),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        metric_sample(
            &body,
            "snakepit_build_info",
            &[&format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0),
        "{body}"
    );
    for slot in ["0", "1"] {
        let rss = metric_sample(
            &body,
            "snakepit_worker_rss_bytes",
            &[r#"pool="e""#, &format!(r#"slot="{slot}""#)],
        );
        assert!(
            rss.is_some_and(|b| b > 1_000_000.0),
            "a ready worker's RSS in slot {slot}: {rss:?}\n{body}"
        );
    }
    for process in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "process_cpu_seconds_total",
    ] {
        assert!(
            metric_sample(&body, process, &[]).is_some(),
            "{process}:\n{body}"
        );
    }

    // A request in flight, and a Python span.
    let pool = sp.pool("e").unwrap().clone();
    let sleeping = tokio::spawn({
        let pool = pool.clone();
        async move { pool.execute(Call::new("sleep").kwarg("ms", 1500)).await }
    });
    metrics_until(addr, "one request in flight", |b| {
        metric_sample(b, "snakepit_pool_in_flight", &[r#"pool="e""#]) == Some(1.0)
    })
    .await;
    sleeping.await.unwrap().expect("sleep returns");
    assert_eq!(add(&pool, 1, 2).await, 3);
    let traced = sp.pool("traced").unwrap();
    traced
        .execute(Call::new("traced").kwarg("n", 10))
        .await
        .expect("traced returns");
    let body = metrics_until(addr, "the Python span's histogram", |b| {
        b.contains("snakepit_python_span_duration_seconds_bucket{")
    })
    .await;
    assert_eq!(
        metric_sample(&body, "snakepit_pool_in_flight", &[r#"pool="e""#]),
        Some(0.0)
    );

    // Every family: a counter, gauge or histogram with HELP text.
    promtool_check(&body);
    let helped: BTreeSet<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for (name, kind) in families(&body) {
        assert!(
            ["counter", "gauge", "histogram"].contains(&kind.as_str()),
            "{name} is a {kind}: durations are histograms, nothing is a summary"
        );
        assert!(helped.contains(name.as_str()), "{name} has no HELP text");
    }
    assert!(
        families(&body).contains(&(
            "snakepit_python_span_duration_seconds".into(),
            "histogram".into()
        )),
        "{body}"
    );

    // Health, readiness, and nothing else.
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    assert_eq!(http_get(addr, "/readyz").await.0, 200);
    let (code, _) = http_get(addr, "/nope").await;
    assert_eq!(code, 404);
    assert_eq!(http_get(addr, "/metrics/extra").await.0, 404);

    // Once the pools are gone nothing is ready; the process still lives.
    sp.shutdown().await;
    let (code, reason) = http_get(addr, "/readyz").await;
    assert_eq!(code, 503, "{reason}");
    assert!(reason.contains("pool"), "{reason}");
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    let (_, body) = http_get(addr, "/metrics").await;
    for slot in ["0", "1"] {
        assert_eq!(
            metric_sample(
                &body,
                "snakepit_worker_rss_bytes",
                &[r#"pool="e""#, &format!(r#"slot="{slot}""#)]
            ),
            Some(0.0),
            "an ended worker's RSS gauge is 0:\n{body}"
        );
    }
}

/// Every metric name constant has HELP text in `src/metrics.rs`: families
/// that have not happened yet in the test above (gRPC, agents) included.
#[test]
fn every_metric_constant_is_described() {
    let root = env!("CARGO_MANIFEST_DIR");
    let names = std::fs::read_to_string(format!("{root}/actors/src/telemetry.rs")).unwrap();
    let source = std::fs::read_to_string(format!("{root}/src/metrics.rs")).unwrap();
    let (_, described) = source
        .split_once("fn describe()")
        .expect("src/metrics.rs has fn describe()");
    let constants: Vec<&str> = names
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split_once(": &str"))
        .map(|(name, _)| name)
        .collect();
    assert!(constants.len() > 30, "{constants:?}");
    for name in constants {
        let needle = format!("metric::{name},");
        assert!(
            described.contains(&needle),
            "metric::{name} has no describe_* call in src/metrics.rs"
        );
    }
}

/// `SNAKEPIT_LOG_FORMAT=json`: one JSON object a line on stderr; the text
/// format has no ANSI colours when stderr is not a terminal.
#[test]
fn json_log_format_writes_one_object_a_line() {
    let run = |json: bool| {
        let mut command = common::snakepit_command();
        command
            .args(["exec", "add", "--args", r#"{"a": 1, "b": 2}"#])
            .env("SNAKEPIT_LOG", "info");
        if json {
            command.env("SNAKEPIT_LOG_FORMAT", "json");
        } else {
            command.env_remove("SNAKEPIT_LOG_FORMAT");
        }
        let out = command.output().expect("run snakepit exec");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
        String::from_utf8(out.stderr).expect("UTF-8 logs")
    };
    let stderr = run(true);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(!lines.is_empty(), "no log line at info");
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        assert!(value.is_object(), "{line}");
        assert!(value.get("level").is_some(), "{line}");
        assert!(value.get("fields").is_some(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("Worker is ready.")),
        "{stderr}"
    );
    let text = run(false);
    assert!(text.contains("Worker is ready."), "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI colours on a pipe: {text:?}");
}
