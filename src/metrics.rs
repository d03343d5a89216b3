//! The Prometheus endpoint: installs the global `metrics` recorder and serves
//! `/metrics` over HTTP on the given address.

use std::net::SocketAddr;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use snakepit_actors::telemetry::metric;

use crate::Error;

static INSTALLED: OnceLock<PrometheusHandle> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the recorder without an endpoint of its own; the caller renders
/// the handle where it serves (the node agent's health port). One per
/// process, as for [`serve`].
pub fn install() -> Result<PrometheusHandle, Error> {
    if let Some(handle) = INSTALLED.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| Error::Config(format!("cannot install the metrics recorder: {e}")))?;
    describe();
    let _ = INSTALLED.set(handle.clone());
    Ok(handle)
}

/// Installs the recorder and serves it on `addr`. One per process: a second
/// call returns the handle of the first.
pub fn serve(addr: SocketAddr) -> Result<PrometheusHandle, Error> {
    if let Some(handle) = INSTALLED.get() {
        return Ok(handle.clone());
    }
    let builder = PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full(metric::REQUEST_DURATION.into()),
            LATENCY_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(metric::GRPC_REQUEST_DURATION.into()),
                LATENCY_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(metric::WORKER_STARTUP_DURATION.into()),
                &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0],
            )
        })
        .map_err(|e| Error::Config(format!("metrics buckets: {e}")))?;
    // Bind first so that a busy port is a clear error, not a background panic.
    std::net::TcpListener::bind(addr)
        .map_err(|e| Error::Config(format!("cannot serve metrics on {addr}: {e}")))?;
    let (recorder, exporter) = builder
        .build()
        .map_err(|e| Error::Config(format!("cannot serve metrics on {addr}: {e}")))?;
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|_| Error::Config("a metrics recorder is already installed".into()))?;
    tokio::spawn(async move {
        if let Err(e) = exporter.await {
            tracing::error!(error = ?e, "Metrics endpoint stopped.");
        }
    });
    describe();
    let _ = INSTALLED.set(handle.clone());
    tracing::info!(%addr, "Serving Prometheus metrics at /metrics.");
    Ok(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        metric::REQUESTS_TOTAL,
        "Requests finished, by pool, tool and outcome."
    );
    describe_histogram!(metric::REQUEST_DURATION, Unit::Seconds, "Request duration.");
    describe_gauge!(metric::WORKERS_UP, "Workers ready to take requests.");
    describe_gauge!(metric::QUEUE_DEPTH, "Requests waiting for a worker.");
    describe_gauge!(metric::AGENTS_ATTACHED, "Node agents attached now.");
    describe_gauge!(metric::AGENT_WORKERS, "Workers a node agent runs now.");
    describe_counter!(
        metric::AGENT_FRAMES_RELAYED_TOTAL,
        "Worker frames relayed through a node agent's link, by direction."
    );
    describe_counter!(
        metric::AGENT_RECONNECTS_TOTAL,
        "Times a node agent attached again after losing its link."
    );
    describe_counter!(
        metric::AGENT_DISCONNECTS_TOTAL,
        "Node agent links that ended, by cause."
    );
    describe_counter!(
        metric::QUEUE_REJECTIONS_TOTAL,
        "Requests refused (saturated) or expired (timeout) in the queue."
    );
    describe_counter!(metric::WORKER_SPAWNS_TOTAL, "Worker processes spawned.");
    describe_counter!(
        metric::WORKER_EXITS_TOTAL,
        "Worker processes that exited, by cause."
    );
    describe_histogram!(
        metric::WORKER_STARTUP_DURATION,
        Unit::Seconds,
        "Time from spawn to Hello."
    );
    describe_counter!(
        metric::GRPC_REQUESTS_TOTAL,
        "gRPC calls finished, by method and status code."
    );
    describe_histogram!(
        metric::GRPC_REQUEST_DURATION,
        Unit::Seconds,
        "gRPC call duration, to the last message of a stream."
    );
    describe_counter!(
        metric::GRPC_UNAUTHENTICATED_TOTAL,
        "gRPC calls refused for a missing or wrong bearer token."
    );
    describe_counter!(
        metric::SERVICE_FAILURES_TOTAL,
        "Services of the runtime (the gRPC server) that failed."
    );
}
