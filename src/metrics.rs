//! The Prometheus endpoint: installs the global `metrics` recorder (one per
//! process) and serves it over a small HTTP/1.1 server that both the host
//! (`--metrics-addr`) and the node agent (its health port) use:
//!
//! - `/metrics`: every family, with HELP text, after collecting the
//!   process's own metrics (`process_*`);
//! - `/healthz`: 200 while the process (for the agent: its loop) lives;
//! - `/readyz`: 200 when the readiness check passes — on the host, every
//!   pool has a worker up ([`set_readiness`], filled by
//!   `SnakepitBuilder::start`); 503 with the reason otherwise;
//! - anything else: 404.
//!
//! Every histogram has buckets ([`LATENCY_BUCKETS`] unless set per family),
//! so no family renders as a summary.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use snakepit_actors::telemetry::metric;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Error;

static INSTALLED: OnceLock<PrometheusHandle> = OnceLock::new();
static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();
static READINESS: RwLock<Option<Check>> = RwLock::new(None);

/// Buckets, in seconds, of every duration histogram that sets none of its
/// own: request, gRPC call and Python span durations.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets, in seconds, of `snakepit_worker_startup_duration_seconds`.
pub const STARTUP_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// Buckets of `snakepit_batch_size`: calls per batch.
pub const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A health or readiness check: `Ok` answers 200, `Err(reason)` 503 with
/// the reason as the body.
pub type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// What `/healthz` and `/readyz` ask.
#[derive(Clone)]
pub struct Probes {
    /// Liveness, for `/healthz`.
    pub live: Check,
    /// Readiness, for `/readyz`.
    pub ready: Check,
}

/// Installs the recorder without an endpoint; the caller serves it with
/// [`serve_endpoint`]. One per process: a second call returns the handle of
/// the first.
pub fn install() -> Result<PrometheusHandle, Error> {
    if let Some(handle) = INSTALLED.get() {
        return Ok(handle.clone());
    }
    let handle = builder()
        .map_err(|e| Error::Config(format!("metrics buckets: {e}")))?
        .install_recorder()
        .map_err(|e| Error::Config(format!("cannot install the metrics recorder: {e}")))?;
    describe();
    let process = PROCESS.get_or_init(metrics_process::Collector::default);
    process.describe();
    process.collect();
    metrics::gauge!(metric::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let upkeep = handle.clone();
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                upkeep.run_upkeep();
            }
        });
    }
    let _ = INSTALLED.set(handle.clone());
    Ok(handle)
}

fn builder() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(metric::REQUEST_DURATION.into()),
            LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(metric::GRPC_REQUEST_DURATION.into()),
            LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(metric::PYTHON_SPAN_DURATION.into()),
            LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(metric::WORKER_STARTUP_DURATION.into()),
            STARTUP_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(metric::BATCH_SIZE.into()), BATCH_SIZE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(metric::BATCH_WAIT.into()), LATENCY_BUCKETS)
}

/// The host's endpoint: installs the recorder and serves it on `addr`,
/// `/readyz` asking the check [`set_readiness`] sets (503 until then). One
/// per process: a second call returns the handle of the first and serves
/// nothing more. Must run inside a tokio runtime.
pub fn serve(addr: SocketAddr) -> Result<PrometheusHandle, Error> {
    if let Some(handle) = INSTALLED.get() {
        return Ok(handle.clone());
    }
    let handle = install()?;
    let live: Check = Arc::new(|| Box::pin(async { Ok(()) }));
    let ready: Check = Arc::new(|| {
        let check = READINESS.read().ok().and_then(|r| r.clone());
        Box::pin(async move {
            match check {
                Some(check) => check().await,
                None => Err("starting: no pool is running yet\n".into()),
            }
        })
    });
    let bound = serve_endpoint(addr, handle.clone(), Probes { live, ready })?;
    tracing::info!(addr = %bound, "Serving Prometheus metrics at /metrics, health at /healthz and /readyz.");
    Ok(handle)
}

/// Sets what the host's `/readyz` asks; the last call wins (a process that
/// starts a second runtime reports on that one).
pub fn set_readiness(check: Check) {
    if let Ok(mut slot) = READINESS.write() {
        *slot = Some(check);
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr`; returns the
/// address bound (useful with port 0). Binds before returning, so a busy
/// port is an error here. Must run inside a tokio runtime.
pub fn serve_endpoint(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    probes: Probes,
) -> Result<SocketAddr, Error> {
    let bind_error = |e: std::io::Error| Error::Config(format!("cannot serve on {addr}: {e}"));
    let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_error)?;
    tokio::spawn(async move {
        loop {
            let socket = match listener.accept().await {
                Ok((socket, _)) => socket,
                Err(e) => {
                    tracing::debug!(error = %e, "The metrics endpoint could not accept a connection.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let metrics = metrics.clone();
            let probes = probes.clone();
            tokio::spawn(answer(socket, metrics, probes));
        }
    });
    Ok(bound)
}

/// Reads one request's head and answers it; the connection then closes.
async fn answer(mut socket: tokio::net::TcpStream, metrics: PrometheusHandle, probes: Probes) {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    let read = async {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .is_err()
    {
        return;
    }
    let head = String::from_utf8_lossy(&request);
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or("");
    let target = words.next().unwrap_or("/");
    let path = target.split('?').next().unwrap_or(target);
    let probe = |check: &Check| {
        let check = check.clone();
        async move {
            match tokio::time::timeout(Duration::from_secs(5), check()).await {
                Ok(Ok(())) => ("200 OK", "ok\n".to_string()),
                Ok(Err(reason)) => ("503 Service Unavailable", reason),
                Err(_) => (
                    "503 Service Unavailable",
                    "the check did not answer in time\n".to_string(),
                ),
            }
        }
    };
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            if let Some(process) = PROCESS.get() {
                process.collect();
            }
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                metrics.render(),
            )
        }
        ("GET" | "HEAD", "/healthz") => {
            let (status, body) = probe(&probes.live).await;
            (status, "text/plain; charset=utf-8", body)
        }
        ("GET" | "HEAD", "/readyz") => {
            let (status, body) = probe(&probes.ready).await;
            (status, "text/plain; charset=utf-8", body)
        }
        (_, "/metrics" | "/healthz" | "/readyz") => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".to_string(),
        ),
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: /metrics, /healthz and /readyz are served here\n".to_string(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// HELP text for every family in [`metric`]. A family without one fails
/// `promtool check metrics`; `tests/metrics_endpoint.rs` checks them all.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        metric::BATCH_SIZE,
        Unit::Count,
        "Calls per batch sent to a batched tool, by pool and tool."
    );
    describe_histogram!(
        metric::BATCH_WAIT,
        Unit::Seconds,
        "Time each call of a batched tool waited in the batching window, by pool and tool."
    );
    describe_gauge!(
        metric::POOL_TARGET_SIZE,
        "Workers a pool aims for: its autoscaler's target, or its configured size."
    );
    describe_counter!(
        metric::POOL_SCALE_EVENTS_TOTAL,
        "Autoscaling decisions, by pool, direction (up, down) and reason."
    );
    describe_counter!(
        metric::REQUESTS_TOTAL,
        "Requests finished, by pool, tool and outcome."
    );
    describe_histogram!(
        metric::REQUEST_DURATION,
        Unit::Seconds,
        "Request duration from submission to the last reply, by pool and tool."
    );
    describe_gauge!(
        metric::WORKERS_UP,
        "Workers ready to take requests, by pool."
    );
    describe_gauge!(
        metric::QUEUE_DEPTH,
        "Requests waiting for a worker, by pool."
    );
    describe_counter!(
        metric::QUEUE_REJECTIONS_TOTAL,
        "Requests refused (saturated) or expired (timeout) in the queue, by pool and reason."
    );
    describe_counter!(
        metric::WORKER_SPAWNS_TOTAL,
        "Worker processes spawned, by pool."
    );
    describe_counter!(
        metric::WORKER_EXITS_TOTAL,
        "Worker processes that exited, by pool and cause."
    );
    describe_histogram!(
        metric::WORKER_STARTUP_DURATION,
        Unit::Seconds,
        "Time from spawning a worker to its Hello, by pool."
    );
    describe_counter!(
        metric::WORKER_RESTARTS_TOTAL,
        "Failed workers restarted, by pool."
    );
    describe_counter!(
        metric::WORKER_RECYCLES_TOTAL,
        "Workers replaced on purpose, by pool and reason (ttl, max_requests, memory)."
    );
    describe_counter!(
        metric::WORKER_KILLS_TOTAL,
        "Workers the host killed, by pool and reason."
    );
    describe_counter!(
        metric::HEARTBEATS_MISSED_TOTAL,
        "Heartbeats a worker did not answer in time, by pool."
    );
    describe_gauge!(
        metric::POOL_DEGRADED,
        "1 while the pool is degraded (restarting too often or without workers), else 0."
    );
    describe_counter!(
        metric::POOL_DEGRADATIONS_TOTAL,
        "Times the pool became degraded, by pool."
    );
    describe_counter!(
        metric::ORPHANS_REAPED_TOTAL,
        "Leftover processes of dead earlier runs ended at start-up."
    );
    describe_counter!(
        metric::REQUEST_RETRIES_TOTAL,
        "Requests run again on another worker after theirs died, by pool."
    );
    describe_gauge!(metric::SESSIONS_ACTIVE, "Sessions alive.");
    describe_counter!(
        metric::SESSIONS_RELEASED_TOTAL,
        "Sessions released, by source (manual, ttl, dropped)."
    );
    describe_counter!(
        metric::SESSION_CLEANUP_ERRORS_TOTAL,
        "Session releases that left state behind on a worker, by source."
    );
    describe_counter!(
        metric::PYTHON_EVENTS_TOTAL,
        "Events Python code emitted through snakepit_bridge.telemetry, by pool and event."
    );
    describe_histogram!(
        metric::PYTHON_SPAN_DURATION,
        Unit::Seconds,
        "Time spent in Python telemetry spans, by pool and span."
    );
    describe_counter!(
        metric::REQUEST_CANCELLATIONS_TOTAL,
        "Requests cancelled by their caller, by pool and stage (queued, running)."
    );
    describe_counter!(
        metric::REQUEST_RETRIES_WITHHELD_TOTAL,
        "Idempotent requests not run again because their worker ended while running them, by pool."
    );
    describe_counter!(
        metric::HOST_CALLS_REJECTED_TOTAL,
        "Host tool calls refused because a worker had max_host_calls running, by pool."
    );
    describe_counter!(
        metric::STRAY_PROCESSES_ENDED_TOTAL,
        "Processes of this run that left their worker's process group and were ended."
    );
    describe_counter!(
        metric::WORKER_OUTPUT_TRUNCATED_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes of worker output past the line cap, dropped, by pool and stream."
    );
    describe_counter!(
        metric::SERVICE_FAILURES_TOTAL,
        "Services of the runtime (the gRPC server) that failed, by service."
    );
    describe_counter!(
        metric::GRPC_REQUESTS_TOTAL,
        "gRPC calls finished, by method and status code."
    );
    describe_histogram!(
        metric::GRPC_REQUEST_DURATION,
        Unit::Seconds,
        "gRPC call duration, to the last message of a stream, by method."
    );
    describe_counter!(
        metric::GRPC_UNAUTHENTICATED_TOTAL,
        "gRPC calls refused for a missing or wrong bearer token, by reason."
    );
    describe_gauge!(metric::AGENTS_ATTACHED, "Node agents attached now.");
    describe_gauge!(
        metric::AGENT_WORKERS,
        "Workers a node agent runs now, by agent."
    );
    describe_counter!(
        metric::AGENT_FRAMES_RELAYED_TOTAL,
        "Worker frames relayed through a node agent's link, by agent and direction."
    );
    describe_counter!(
        metric::AGENT_RECONNECTS_TOTAL,
        "Times a node agent attached again after losing its link, by agent."
    );
    describe_counter!(
        metric::AGENT_DISCONNECTS_TOTAL,
        "Node agent links that ended, by agent and cause."
    );
    describe_counter!(
        metric::AGENT_LINK_LOSSES_TOTAL,
        "On a node agent: times it lost its link to the host and dialed again."
    );
    describe_gauge!(
        metric::AGENT_LINK_UP,
        "On a node agent: 1 while it is attached to the host."
    );
    describe_gauge!(
        metric::AGENT_LOCAL_WORKERS,
        "On a node agent: its worker processes, by state (running, ready)."
    );
    describe_gauge!(
        metric::WORKER_RSS_BYTES,
        Unit::Bytes,
        "Resident memory of a worker process, by pool and slot; 0 once it ended."
    );
    describe_gauge!(
        metric::POOL_IN_FLIGHT,
        "Requests routed to a worker and not finished yet, by pool."
    );
    describe_gauge!(
        metric::SHARED_MEMORY_IN_USE_BYTES,
        Unit::Bytes,
        "Bytes allocated in a pool's shared-memory arena, by pool."
    );
    describe_gauge!(
        metric::SHARED_MEMORY_CAPACITY_BYTES,
        Unit::Bytes,
        "Size of a pool's shared-memory arena (max_shared_bytes), by pool."
    );
    describe_gauge!(
        metric::BUILD_INFO,
        "Always 1, labelled with the version of snakepit that runs."
    );
}
