//! Telemetry: one typed event per thing that happens. An event's `emit()` is
//! the only place that logs it (tracing), counts it (metrics) and hands it to
//! in-process subscribers. Metric names and labels are listed in
//! `observability/METRICS.md`; labels are bounded (pool, tool, outcome, cause),
//! never a session id or a pid.
//!
//! Emitting is synchronous and cheap: no actor hop, and subscribers are only
//! cloned into when someone listens. Two kinds of subscription: every event
//! ([`Telemetry::subscribe`]), or the runtime's state only
//! ([`Telemetry::subscribe_lifecycle`]: workers, pools, sessions, services),
//! without the events of each call, which come by the thousand per second —
//! what a long-lived watcher such as the gRPC server's health wants.

mod agents;
mod events;
mod services;
pub mod trace;

use std::sync::Arc;

pub use agents::*;
pub use events::*;
pub use services::*;
use tokio::sync::broadcast;

/// Metric names, in one place.
pub mod metric {
    /// Requests finished, by pool, tool and outcome.
    pub const REQUESTS_TOTAL: &str = "snakepit_requests_total";
    /// Request duration in seconds, by pool and tool.
    pub const REQUEST_DURATION: &str = "snakepit_request_duration_seconds";
    /// Workers ready to take requests, by pool.
    pub const WORKERS_UP: &str = "snakepit_workers_up";
    /// Requests waiting for a worker, by pool.
    pub const QUEUE_DEPTH: &str = "snakepit_queue_depth";
    /// Requests refused or expired in the queue, by pool and reason.
    pub const QUEUE_REJECTIONS_TOTAL: &str = "snakepit_queue_rejections_total";
    /// Worker processes spawned, by pool.
    pub const WORKER_SPAWNS_TOTAL: &str = "snakepit_worker_spawns_total";
    /// Worker processes that exited, by pool and cause.
    pub const WORKER_EXITS_TOTAL: &str = "snakepit_worker_exits_total";
    /// Seconds from spawn to `Hello`, by pool.
    pub const WORKER_STARTUP_DURATION: &str = "snakepit_worker_startup_duration_seconds";
    /// Failed workers restarted, by pool.
    pub const WORKER_RESTARTS_TOTAL: &str = "snakepit_worker_restarts_total";
    /// Workers replaced on purpose, by pool and reason (ttl, max_requests, memory).
    pub const WORKER_RECYCLES_TOTAL: &str = "snakepit_worker_recycles_total";
    /// Workers the host killed, by pool and reason.
    pub const WORKER_KILLS_TOTAL: &str = "snakepit_worker_kills_total";
    /// Heartbeats a worker did not answer in time, by pool.
    pub const HEARTBEATS_MISSED_TOTAL: &str = "snakepit_heartbeats_missed_total";
    /// 1 while the pool is degraded, else 0, by pool.
    pub const POOL_DEGRADED: &str = "snakepit_pool_degraded";
    /// Times the pool became degraded, by pool.
    pub const POOL_DEGRADATIONS_TOTAL: &str = "snakepit_pool_degradations_total";
    /// Leftover processes of dead earlier runs that were ended at start-up.
    pub const ORPHANS_REAPED_TOTAL: &str = "snakepit_orphans_reaped_total";
    /// Requests retried on another worker after theirs died, by pool.
    pub const REQUEST_RETRIES_TOTAL: &str = "snakepit_request_retries_total";
    /// Sessions alive.
    pub const SESSIONS_ACTIVE: &str = "snakepit_sessions_active";
    /// Sessions released, by source (manual, ttl, dropped).
    pub const SESSIONS_RELEASED_TOTAL: &str = "snakepit_sessions_released_total";
    /// Session releases that left state behind on a worker, by source.
    pub const SESSION_CLEANUP_ERRORS_TOTAL: &str = "snakepit_session_cleanup_errors_total";
    /// Events Python code emitted (`snakepit_bridge.telemetry`), by pool and
    /// event name (the first 64 distinct names; later ones count as `other`).
    pub const PYTHON_EVENTS_TOTAL: &str = "snakepit_python_events_total";
    /// Seconds spent in Python spans, by pool and span name (bounded as above).
    pub const PYTHON_SPAN_DURATION: &str = "snakepit_python_span_duration_seconds";
    /// Requests cancelled by their caller, by pool and reason.
    pub const REQUEST_CANCELLATIONS_TOTAL: &str = "snakepit_request_cancellations_total";
    /// Counter: idempotent requests not run again because their worker ended
    /// itself while running them (likely poison), by pool.
    pub const REQUEST_RETRIES_WITHHELD_TOTAL: &str = "snakepit_request_retries_withheld_total";
    /// Counter: host calls refused because a worker had `max_host_calls`
    /// running, by pool.
    pub const HOST_CALLS_REJECTED_TOTAL: &str = "snakepit_host_calls_rejected_total";
    /// Counter: processes of this run that left their worker's process
    /// group and were ended when it exited or at shutdown.
    pub const STRAY_PROCESSES_ENDED_TOTAL: &str = "snakepit_stray_processes_ended_total";
    /// Counter: bytes of worker output past the line cap, dropped, by pool
    /// and stream.
    pub const WORKER_OUTPUT_TRUNCATED_BYTES_TOTAL: &str =
        "snakepit_worker_output_truncated_bytes_total";
    /// Counter: services of the runtime that failed, by service.
    pub const SERVICE_FAILURES_TOTAL: &str = "snakepit_service_failures_total";
    /// Counter: gRPC calls finished, by method and status code.
    pub const GRPC_REQUESTS_TOTAL: &str = "snakepit_grpc_requests_total";
    /// Histogram: gRPC call duration in seconds, by method.
    pub const GRPC_REQUEST_DURATION: &str = "snakepit_grpc_request_duration_seconds";
    /// Counter: gRPC calls refused for a missing or wrong token, by reason.
    pub const GRPC_UNAUTHENTICATED_TOTAL: &str = "snakepit_grpc_unauthenticated_total";
    /// Gauge: node agents attached now.
    pub const AGENTS_ATTACHED: &str = "snakepit_agents_attached";
    /// Gauge: workers an agent runs now, by agent.
    pub const AGENT_WORKERS: &str = "snakepit_agent_workers";
    /// Counter: worker frames relayed through an agent's link, by agent and
    /// direction (`to_agent`, `from_agent`).
    pub const AGENT_FRAMES_RELAYED_TOTAL: &str = "snakepit_agent_frames_relayed_total";
    /// Counter: times an agent attached again after losing its link, by agent.
    pub const AGENT_RECONNECTS_TOTAL: &str = "snakepit_agent_reconnects_total";
    /// Counter: agent links that ended, by agent and cause (`closed`,
    /// `stream_error`, `timeout`, `replaced`, `protocol_violation`,
    /// `host_shutdown`).
    pub const AGENT_DISCONNECTS_TOTAL: &str = "snakepit_agent_disconnects_total";
    /// Counter, on a node agent's own port: times it lost its link to the
    /// host and dialed again.
    pub const AGENT_LINK_LOSSES_TOTAL: &str = "snakepit_agent_link_losses_total";
    /// Gauge, on a node agent's own port: 1 while it is attached to the host.
    pub const AGENT_LINK_UP: &str = "snakepit_agent_link_up";
    /// Gauge, on a node agent's own port: its worker processes running, and
    /// those of them that said Hello (`state` = `running`, `ready`).
    pub const AGENT_LOCAL_WORKERS: &str = "snakepit_agent_local_workers";
    /// Gauge: resident memory of a worker process in bytes, by pool and slot
    /// (the slot index, bounded by the pool's size); 0 once it ended.
    pub const WORKER_RSS_BYTES: &str = "snakepit_worker_rss_bytes";
    /// Gauge: requests routed to a worker and not finished yet, by pool.
    pub const POOL_IN_FLIGHT: &str = "snakepit_pool_in_flight";
    /// Gauge: 1, labelled with the version of snakepit that runs.
    pub const BUILD_INFO: &str = "snakepit_build_info";
    /// Gauge: bytes allocated in a pool's shared-memory arena (arrays on
    /// their way to workers, or held by them or by Rust), by pool.
    pub const SHARED_MEMORY_IN_USE_BYTES: &str = "snakepit_shared_memory_in_use_bytes";
    /// Gauge: the size of a pool's shared-memory arena (`max_shared_bytes`),
    /// by pool; absent for a pool without shared memory.
    pub const SHARED_MEMORY_CAPACITY_BYTES: &str = "snakepit_shared_memory_capacity_bytes";
    /// Histogram: calls per batch sent to a batched tool, by pool and tool.
    pub const BATCH_SIZE: &str = "snakepit_batch_size";
    /// Histogram: how long each call of a batched tool waited in the
    /// batching window, by pool and tool.
    pub const BATCH_WAIT: &str = "snakepit_batch_wait_seconds";
    /// Gauge: the number of workers an autoscaled pool aims for (its
    /// configured size otherwise), by pool.
    pub const POOL_TARGET_SIZE: &str = "snakepit_pool_target_size";
    /// Counter: scaling decisions, by pool, `direction` (`up`, `down`) and
    /// `reason`.
    pub const POOL_SCALE_EVENTS_TOTAL: &str = "snakepit_pool_scale_events_total";
}

/// The outcomes of `snakepit_requests_total` that exist at zero for every
/// tool a pool's workers advertise: success and the failures alerts watch.
/// Rarer outcomes appear on their first occurrence.
pub const REGISTERED_OUTCOMES: &[&str] = &[
    "ok",
    "python_exception",
    "timeout",
    "queue_timeout",
    "saturated",
    "worker_crashed",
    "cancelled",
];

/// Makes every family with a bounded label set exist at zero for `pool`, so
/// that `increase()` sees its first event. Idempotent: counters are
/// incremented by 0, never reset. Called when a pool starts.
pub(crate) fn register_pool_metrics(pool: &str, size: usize) {
    use metrics::{counter, gauge};
    let p = || pool.to_string();
    for name in [
        metric::WORKER_SPAWNS_TOTAL,
        metric::WORKER_RESTARTS_TOTAL,
        metric::HEARTBEATS_MISSED_TOTAL,
        metric::POOL_DEGRADATIONS_TOTAL,
        metric::REQUEST_RETRIES_TOTAL,
        metric::REQUEST_RETRIES_WITHHELD_TOTAL,
        metric::HOST_CALLS_REJECTED_TOTAL,
    ] {
        counter!(name, "pool" => p()).increment(0);
    }
    let labelled: [(&str, &str, &[&str]); 6] = [
        (
            metric::WORKER_EXITS_TOTAL,
            "cause",
            &[
                ExitCause::Shutdown.as_str(),
                ExitCause::Crashed.as_str(),
                ExitCause::ProtocolViolation.as_str(),
                ExitCause::StartupFailed.as_str(),
                ExitCause::Recycled.as_str(),
                ExitCause::Unresponsive.as_str(),
                ExitCause::AgentLost.as_str(),
                ExitCause::Drained.as_str(),
                ExitCause::ScaledDown.as_str(),
            ],
        ),
        (
            metric::WORKER_KILLS_TOTAL,
            "reason",
            &[
                KillReason::Unresponsive.as_str(),
                KillReason::StartupTimeout.as_str(),
                KillReason::ProtocolViolation.as_str(),
                KillReason::DrainTimeout.as_str(),
                KillReason::GraceExpired.as_str(),
            ],
        ),
        (
            metric::WORKER_RECYCLES_TOTAL,
            "reason",
            &[
                RecycleReason::Age.as_str(),
                RecycleReason::Requests.as_str(),
                RecycleReason::Memory { rss_mb: 0 }.as_str(),
            ],
        ),
        (
            metric::QUEUE_REJECTIONS_TOTAL,
            "reason",
            &["saturated", "timeout"],
        ),
        (
            metric::REQUEST_CANCELLATIONS_TOTAL,
            "stage",
            &["queued", "batching", "running"],
        ),
        (
            metric::WORKER_OUTPUT_TRUNCATED_BYTES_TOTAL,
            "stream",
            &["stdout", "stderr"],
        ),
    ];
    for (name, label, values) in labelled {
        for value in values {
            counter!(name, "pool" => p(), label => *value).increment(0);
        }
    }
    for name in [
        metric::WORKERS_UP,
        metric::QUEUE_DEPTH,
        metric::POOL_DEGRADED,
        metric::POOL_IN_FLIGHT,
    ] {
        gauge!(name, "pool" => p()).set(0.0);
    }
    for slot in 0..size {
        gauge!(metric::WORKER_RSS_BYTES, "pool" => p(), "slot" => slot.to_string()).set(0.0);
    }
    // Families of the whole runtime, not of a pool.
    counter!(metric::ORPHANS_REAPED_TOTAL).increment(0);
    counter!(metric::STRAY_PROCESSES_ENDED_TOTAL).increment(0);
    gauge!(metric::SESSIONS_ACTIVE).increment(0.0);
    gauge!(metric::AGENTS_ATTACHED).increment(0.0);
    for source in ["manual", "ttl", "dropped"] {
        counter!(metric::SESSIONS_RELEASED_TOTAL, "source" => source).increment(0);
        counter!(metric::SESSION_CLEANUP_ERRORS_TOTAL, "source" => source).increment(0);
    }
}

/// Makes `snakepit_requests_total` exist at zero for each tool a pool's
/// worker advertised and each of [`REGISTERED_OUTCOMES`]. Called when a
/// worker says Hello; idempotent.
pub(crate) fn register_tool_metrics<'a>(pool: &str, tools: impl IntoIterator<Item = &'a str>) {
    for tool in tools {
        for outcome in REGISTERED_OUTCOMES {
            metrics::counter!(metric::REQUESTS_TOTAL, "pool" => pool.to_string(),
                "tool" => tool.to_string(), "outcome" => *outcome)
            .increment(0);
        }
    }
}

/// Sets (or, with `None`, zeroes) the resident memory gauge of a pool's slot.
pub(crate) fn metric_worker_rss(pool: &str, slot: usize, bytes: Option<u64>) {
    metrics::gauge!(metric::WORKER_RSS_BYTES, "pool" => pool.to_string(), "slot" => slot.to_string())
        .set(bytes.unwrap_or(0) as f64);
}

/// Records a batch of `size` calls of `tool`, each having waited in the
/// batching window as long as `waits` says.
pub(crate) fn metric_batch(
    pool: &str,
    tool: &str,
    size: usize,
    waits: impl Iterator<Item = std::time::Duration>,
) {
    metrics::histogram!(metric::BATCH_SIZE, "pool" => pool.to_string(), "tool" => tool.to_string())
        .record(size as f64);
    let wait = metrics::histogram!(metric::BATCH_WAIT, "pool" => pool.to_string(), "tool" => tool.to_string());
    for waited in waits {
        wait.record(waited.as_secs_f64());
    }
}

/// Sets the gauge of live sessions (the registry actor owns the count).
pub(crate) fn metric_sessions_active(count: usize) {
    metrics::gauge!(metric::SESSIONS_ACTIVE).set(count as f64);
}

/// Where events go. Cheap to clone; one per runtime.
#[derive(Clone)]
pub struct Telemetry {
    /// Subscribers to every event.
    subscribers: Arc<broadcast::Sender<Event>>,
    /// Subscribers to the events of the runtime's state only.
    lifecycle: Arc<broadcast::Sender<Event>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("subscribers", &self.subscribers.receiver_count())
            .field("lifecycle", &self.lifecycle.receiver_count())
            .finish()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// A telemetry hub with no subscribers yet.
    pub fn new() -> Self {
        Self {
            subscribers: Arc::new(broadcast::channel(4096).0),
            lifecycle: Arc::new(broadcast::channel(1024).0),
        }
    }

    /// Receives every event emitted from now on. A subscriber that falls more
    /// than 4096 events behind loses the oldest (and is told so by `recv`).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.subscribers.subscribe()
    }

    /// Receives the events about the runtime's state from now on — workers,
    /// pools, sessions, services — and none about single calls (a request
    /// started, stopped, raised, was cancelled, retried or queued; Python's
    /// own events; gRPC calls). A subscriber that falls more than 1024
    /// events behind loses the oldest.
    pub fn subscribe_lifecycle(&self) -> broadcast::Receiver<Event> {
        self.lifecycle.subscribe()
    }

    /// An event about the runtime's state: to every subscriber.
    fn publish(&self, event: impl FnOnce() -> Event) {
        let all = self.subscribers.receiver_count() > 0;
        let lifecycle = self.lifecycle.receiver_count() > 0;
        match (all, lifecycle) {
            (false, false) => {}
            (true, false) => {
                let _ = self.subscribers.send(event());
            }
            (false, true) => {
                let _ = self.lifecycle.send(event());
            }
            (true, true) => {
                let event = event();
                let _ = self.lifecycle.send(event.clone());
                let _ = self.subscribers.send(event);
            }
        }
    }

    /// An event about one call: only to subscribers of every event.
    fn publish_call(&self, event: impl FnOnce() -> Event) {
        if self.subscribers.receiver_count() > 0 {
            let _ = self.subscribers.send(event());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn lifecycle_subscribers_get_state_events_and_no_call_events() {
        let telemetry = Telemetry::new();
        let mut lifecycle = telemetry.subscribe_lifecycle();
        let mut all = telemetry.subscribe();
        RequestStopped {
            pool: "p".into(),
            tool: "t".into(),
            outcome: "ok",
            duration: Duration::ZERO,
            stream: false,
            correlation_id: "c".into(),
        }
        .emit(&telemetry);
        PoolRecovered {
            pool: "p".into(),
            degraded_for: Duration::ZERO,
        }
        .emit(&telemetry);
        assert!(matches!(lifecycle.try_recv(), Ok(Event::PoolRecovered(_))));
        assert!(lifecycle.try_recv().is_err(), "nothing about calls");
        assert!(matches!(all.try_recv(), Ok(Event::RequestStopped(_))));
        assert!(matches!(all.try_recv(), Ok(Event::PoolRecovered(_))));
    }
}
