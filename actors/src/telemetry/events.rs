//! The typed events. Names follow `snakepit.<area>.<noun>.<verb>`.

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use tracing::{debug, info, trace, warn};

use super::{Telemetry, metric};
use crate::process::ExitStatus;

/// Any event, as subscribers receive it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A worker process was spawned.
    WorkerSpawned(WorkerSpawned),
    /// A worker said `Hello` and takes requests.
    WorkerReady(WorkerReady),
    /// A worker process ended.
    WorkerExited(WorkerExited),
    /// A worker could not be started.
    WorkerStartFailed(WorkerStartFailed),
    /// A worker is being started again after a failure.
    WorkerRestarting(WorkerRestarting),
    /// A request reached a worker.
    RequestStarted(RequestStarted),
    /// A request finished, whatever its outcome.
    RequestStopped(RequestStopped),
    /// A request ended with a Python exception.
    RequestException(RequestException),
    /// A request was refused because the queue was full.
    QueueSaturated(QueueSaturated),
    /// A request waited past the queue timeout.
    QueueTimedOut(QueueTimedOut),
    /// A worker is being replaced on purpose (age, requests, memory).
    WorkerRecycled(WorkerRecycled),
    /// A worker did not answer a heartbeat in time.
    HeartbeatMissed(HeartbeatMissed),
    /// The host killed a worker.
    WorkerKilled(WorkerKilled),
    /// A pool restarted workers more often than its policy allows.
    PoolDegraded(PoolDegraded),
    /// A degraded pool is healthy again.
    PoolRecovered(PoolRecovered),
    /// Leftover processes of a dead earlier run were ended.
    OrphansReaped(OrphansReaped),
    /// A request was retried on another worker after its worker died.
    RequestRetried(RequestRetried),
    /// A caller gave up on a request.
    RequestCancelled(RequestCancelled),
    /// Calls to a batched tool left the batching window as one batch.
    BatchFormed(BatchFormed),
    /// An autoscaled pool decided to grow or shrink.
    PoolScaled(PoolScaled),
    /// An idempotent request was not retried: its worker ended itself while
    /// running it.
    RequestRetryWithheld(RequestRetryWithheld),
    /// A host call was refused: the worker had `max_host_calls` running.
    HostCallRejected(HostCallRejected),
    /// A worker's output line was cut at the line cap.
    WorkerOutputTruncated(WorkerOutputTruncated),
    /// Processes that left a worker's process group were ended.
    StrayProcessesEnded(StrayProcessesEnded),
    /// A session ended.
    SessionReleased(SessionReleased),
    /// Releasing a session left state behind on a worker.
    SessionCleanupError(SessionCleanupError),
    /// Python code emitted an event or ended a span.
    PythonEvent(PythonEvent),
    /// A service of the runtime failed.
    ServiceFailed(super::ServiceFailed),
    /// The gRPC server is listening.
    ServerStarted(super::ServerStarted),
    /// The gRPC server stopped.
    ServerStopped(super::ServerStopped),
    /// A gRPC call finished.
    GrpcRequestFinished(super::GrpcRequestFinished),
    /// A node agent attached to the host.
    AgentAttached(super::AgentAttached),
    /// A node agent's link ended.
    AgentDetached(super::AgentDetached),
    /// A gRPC call was refused for its token.
    GrpcUnauthenticated(super::GrpcUnauthenticated),
}

impl Event {
    /// The event's dotted name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::WorkerSpawned(_) => "snakepit.worker.process.spawned",
            Event::WorkerReady(_) => "snakepit.worker.process.ready",
            Event::WorkerExited(_) => "snakepit.worker.process.exited",
            Event::WorkerStartFailed(_) => "snakepit.worker.start.failed",
            Event::WorkerRestarting(_) => "snakepit.worker.process.restarting",
            Event::RequestStarted(_) => "snakepit.request.call.start",
            Event::RequestStopped(_) => "snakepit.request.call.stop",
            Event::RequestException(_) => "snakepit.request.call.exception",
            Event::QueueSaturated(_) => "snakepit.pool.queue.saturated",
            Event::QueueTimedOut(_) => "snakepit.pool.queue.timeout",
            Event::WorkerRecycled(_) => "snakepit.worker.process.recycled",
            Event::HeartbeatMissed(_) => "snakepit.worker.heartbeat.missed",
            Event::WorkerKilled(_) => "snakepit.worker.process.killed",
            Event::PoolDegraded(_) => "snakepit.pool.health.degraded",
            Event::PoolRecovered(_) => "snakepit.pool.health.recovered",
            Event::OrphansReaped(_) => "snakepit.runtime.orphans.reaped",
            Event::RequestRetried(_) => "snakepit.request.call.retried",
            Event::RequestCancelled(_) => "snakepit.request.call.cancelled",
            Event::BatchFormed(_) => "snakepit.pool.batch.formed",
            Event::PoolScaled(_) => "snakepit.pool.scale.changed",
            Event::RequestRetryWithheld(_) => "snakepit.request.retry.withheld",
            Event::HostCallRejected(_) => "snakepit.host.call.rejected",
            Event::WorkerOutputTruncated(_) => "snakepit.worker.output.truncated",
            Event::StrayProcessesEnded(_) => "snakepit.runtime.strays.ended",
            Event::SessionReleased(_) => "snakepit.session.lifecycle.released",
            Event::SessionCleanupError(_) => "snakepit.session.cleanup.error",
            Event::PythonEvent(_) => "snakepit.python.event",
            Event::ServiceFailed(_) => "snakepit.runtime.service.failed",
            Event::ServerStarted(_) => "snakepit.server.listener.started",
            Event::ServerStopped(_) => "snakepit.server.listener.stopped",
            Event::GrpcRequestFinished(_) => "snakepit.server.call.stop",
            Event::GrpcUnauthenticated(_) => "snakepit.server.auth.rejected",
            Event::AgentAttached(_) => "snakepit.remote.agent.attached",
            Event::AgentDetached(_) => "snakepit.remote.agent.detached",
        }
    }
}

/// A worker process was spawned.
#[derive(Debug, Clone)]
pub struct WorkerSpawned {
    /// Pool.
    pub pool: String,
    /// Worker id.
    pub worker: String,
    /// OS process id.
    pub pid: u32,
}

impl WorkerSpawned {
    pub(crate) fn emit(self, t: &Telemetry) {
        debug!(pool = %self.pool, worker = %self.worker, pid = self.pid, "Worker process spawned.");
        counter!(metric::WORKER_SPAWNS_TOTAL, "pool" => self.pool.clone()).increment(1);
        t.publish(|| Event::WorkerSpawned(self));
    }
}

/// A worker said `Hello`.
#[derive(Debug, Clone)]
pub struct WorkerReady {
    /// Pool.
    pub pool: String,
    /// Worker id.
    pub worker: String,
    /// OS process id.
    pub pid: u32,
    /// From spawn to `Hello`.
    pub startup: Duration,
    /// Python version the worker runs.
    pub python_version: String,
    /// Requests it runs at once.
    pub capacity: u32,
    /// Workers of the pool now up.
    pub workers_up: usize,
}

impl WorkerReady {
    pub(crate) fn emit(self, t: &Telemetry) {
        info!(pool = %self.pool, worker = %self.worker, pid = self.pid,
            startup_ms = self.startup.as_millis() as u64, python = %self.python_version,
            capacity = self.capacity, "Worker is ready.");
        histogram!(metric::WORKER_STARTUP_DURATION, "pool" => self.pool.clone())
            .record(self.startup.as_secs_f64());
        gauge!(metric::WORKERS_UP, "pool" => self.pool.clone()).set(self.workers_up as f64);
        t.publish(|| Event::WorkerReady(self));
    }
}

/// Why a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCause {
    /// Asked to stop (shutdown).
    Shutdown,
    /// Died on its own or was killed from outside.
    Crashed,
    /// Broke the protocol; we closed the connection and killed it.
    ProtocolViolation,
    /// Did not say `Hello` in time, or its adapter failed to load.
    StartupFailed,
    /// Replaced on purpose (age, requests, memory).
    Recycled,
    /// Stopped answering heartbeats; killed.
    Unresponsive,
    /// A remote worker whose agent's link ended (the agent died, or a
    /// partition): its process is gone or no longer ours.
    AgentLost,
    /// A remote worker whose agent drained it (the agent is going away).
    Drained,
    /// An autoscaled pool's worker that was idle past `idle_timeout_ms`.
    ScaledDown,
}

impl ExitCause {
    /// Bounded label.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitCause::Shutdown => "shutdown",
            ExitCause::Crashed => "crashed",
            ExitCause::ProtocolViolation => "protocol_violation",
            ExitCause::StartupFailed => "startup_failed",
            ExitCause::Recycled => "recycled",
            ExitCause::Unresponsive => "unresponsive",
            ExitCause::AgentLost => "agent_lost",
            ExitCause::Drained => "drained",
            ExitCause::ScaledDown => "scaled_down",
        }
    }
}

/// A worker process ended.
#[derive(Debug, Clone)]
pub struct WorkerExited {
    /// Pool.
    pub pool: String,
    /// Worker id.
    pub worker: String,
    /// OS process id.
    pub pid: u32,
    /// How it ended.
    pub status: ExitStatus,
    /// Why.
    pub cause: ExitCause,
    /// Requests that were in flight and failed with it.
    pub failed_requests: usize,
    /// Workers of the pool still up.
    pub workers_up: usize,
}

impl WorkerExited {
    pub(crate) fn emit(self, t: &Telemetry) {
        if self.cause == ExitCause::Shutdown {
            debug!(pool = %self.pool, worker = %self.worker, pid = self.pid, status = %self.status,
                "Worker process exited.");
        } else {
            warn!(pool = %self.pool, worker = %self.worker, pid = self.pid, status = %self.status,
                cause = self.cause.as_str(), failed_requests = self.failed_requests,
                "Worker process exited unexpectedly.");
        }
        counter!(metric::WORKER_EXITS_TOTAL, "pool" => self.pool.clone(), "cause" => self.cause.as_str())
            .increment(1);
        gauge!(metric::WORKERS_UP, "pool" => self.pool.clone()).set(self.workers_up as f64);
        t.publish(|| Event::WorkerExited(self));
    }
}

/// A worker could not be started.
#[derive(Debug, Clone)]
pub struct WorkerStartFailed {
    /// Pool.
    pub pool: String,
    /// Worker id.
    pub worker: String,
    /// What went wrong, with Python's error text when there is one.
    pub reason: String,
}

impl WorkerStartFailed {
    pub(crate) fn emit(self, t: &Telemetry) {
        warn!(pool = %self.pool, worker = %self.worker, reason = %self.reason,
            "Worker failed to start.");
        t.publish(|| Event::WorkerStartFailed(self));
    }
}

/// A failed worker is started again after a backoff.
#[derive(Debug, Clone)]
pub struct WorkerRestarting {
    /// Pool.
    pub pool: String,
    /// Worker id of the slot being refilled.
    pub worker: String,
    /// Delay before the new process starts.
    pub backoff: Duration,
    /// Restarts of this pool within the restart window.
    pub recent_restarts: u32,
}

impl WorkerRestarting {
    pub(crate) fn emit(self, t: &Telemetry) {
        info!(pool = %self.pool, worker = %self.worker, backoff_ms = self.backoff.as_millis() as u64,
            recent_restarts = self.recent_restarts, "Restarting worker.");
        counter!(metric::WORKER_RESTARTS_TOTAL, "pool" => self.pool.clone()).increment(1);
        t.publish(|| Event::WorkerRestarting(self));
    }
}

/// A request was handed to a worker.
#[derive(Debug, Clone)]
pub struct RequestStarted {
    /// Pool.
    pub pool: String,
    /// Worker id.
    pub worker: String,
    /// Request id.
    pub request_id: u64,
    /// Time it spent queued.
    pub queued: Duration,
}

impl RequestStarted {
    pub(crate) fn emit(self, t: &Telemetry) {
        t.publish_call(|| Event::RequestStarted(self));
    }
}

/// A request finished.
#[derive(Debug, Clone)]
pub struct RequestStopped {
    /// Pool.
    pub pool: String,
    /// Tool (`<unknown>` when the pool has no such tool, to keep labels bounded).
    pub tool: String,
    /// `ok` or an error's outcome label.
    pub outcome: &'static str,
    /// From submission to the answer.
    pub duration: Duration,
    /// Whether it was a stream.
    pub stream: bool,
    /// The call's correlation id (see `trace::CORRELATION_HEADER`).
    pub correlation_id: Arc<str>,
}

impl RequestStopped {
    pub(crate) fn emit(self, t: &Telemetry) {
        debug!(pool = %self.pool, tool = %self.tool, outcome = self.outcome,
            duration_us = self.duration.as_micros() as u64,
            correlation_id = %self.correlation_id, "Request finished.");
        counter!(metric::REQUESTS_TOTAL, "pool" => self.pool.clone(), "tool" => self.tool.clone(),
            "outcome" => self.outcome)
        .increment(1);
        histogram!(metric::REQUEST_DURATION, "pool" => self.pool.clone(), "tool" => self.tool.clone())
            .record(self.duration.as_secs_f64());
        t.publish_call(|| Event::RequestStopped(self));
    }
}

/// A request ended in a Python exception.
#[derive(Debug, Clone)]
pub struct RequestException {
    /// Pool.
    pub pool: String,
    /// Tool.
    pub tool: String,
    /// Python exception class.
    pub python_type: String,
    /// Its message.
    pub message: String,
    /// The call's correlation id (see `trace::CORRELATION_HEADER`).
    pub correlation_id: Arc<str>,
}

impl RequestException {
    pub(crate) fn emit(self, t: &Telemetry) {
        debug!(pool = %self.pool, tool = %self.tool, python_type = %self.python_type,
            message = %self.message, correlation_id = %self.correlation_id,
            "Tool raised a Python exception.");
        t.publish_call(|| Event::RequestException(self));
    }
}

/// The queue was full.
#[derive(Debug, Clone)]
pub struct QueueSaturated {
    /// Pool.
    pub pool: String,
    /// Queue capacity.
    pub capacity: usize,
}

impl QueueSaturated {
    pub(crate) fn emit(self, t: &Telemetry) {
        warn!(pool = %self.pool, capacity = self.capacity, "Queue is full; request refused.");
        counter!(metric::QUEUE_REJECTIONS_TOTAL, "pool" => self.pool.clone(), "reason" => "saturated")
            .increment(1);
        t.publish_call(|| Event::QueueSaturated(self));
    }
}

/// A request expired in the queue.
#[derive(Debug, Clone)]
pub struct QueueTimedOut {
    /// Pool.
    pub pool: String,
    /// How long it waited.
    pub waited: Duration,
}

impl QueueTimedOut {
    pub(crate) fn emit(self, t: &Telemetry) {
        warn!(pool = %self.pool, waited_ms = self.waited.as_millis() as u64,
            "Request expired in the queue.");
        counter!(metric::QUEUE_REJECTIONS_TOTAL, "pool" => self.pool.clone(), "reason" => "timeout")
            .increment(1);
        t.publish_call(|| Event::QueueTimedOut(self));
    }
}

/// Why a worker is recycled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecycleReason {
    /// It reached `worker_ttl_ms`.
    Age,
    /// It answered `max_requests` requests.
    Requests,
    /// Its resident memory passed `max_memory_mb`.
    Memory {
        /// Resident memory when it was measured, in MiB.
        rss_mb: u64,
    },
}

impl RecycleReason {
    /// Bounded label.
    pub fn as_str(self) -> &'static str {
        match self {
            RecycleReason::Age => "ttl",
            RecycleReason::Requests => "max_requests",
            RecycleReason::Memory { .. } => "memory",
        }
    }
}

/// A worker is being replaced on purpose: its successor is ready and it now
/// finishes its in-flight requests.
#[derive(Debug, Clone)]
pub struct WorkerRecycled {
    /// Pool.
    pub pool: String,
    /// Worker id of the one leaving.
    pub worker: String,
    /// Its OS process id.
    pub pid: u32,
    /// Why.
    pub reason: RecycleReason,
    /// Requests it still has to finish.
    pub in_flight: u32,
    /// Requests it answered in its life.
    pub completed: u64,
}

impl WorkerRecycled {
    pub(crate) fn emit(self, t: &Telemetry) {
        info!(pool = %self.pool, worker = %self.worker, pid = self.pid, reason = self.reason.as_str(),
            in_flight = self.in_flight, completed = self.completed,
            "Recycling worker; its replacement is ready.");
        counter!(metric::WORKER_RECYCLES_TOTAL, "pool" => self.pool.clone(), "reason" => self.reason.as_str())
            .increment(1);
        t.publish(|| Event::WorkerRecycled(self));
    }
}

/// A worker did not answer a heartbeat in time.
#[derive(Debug, Clone)]
pub struct HeartbeatMissed {
    /// Pool.
    pub pool: String,
    /// Worker id.
    pub worker: String,
    /// OS process id.
    pub pid: u32,
    /// Missed beats in a row, this one included.
    pub missed: u32,
    /// Missed beats that get the worker killed.
    pub max_missed: u32,
}

impl HeartbeatMissed {
    pub(crate) fn emit(self, t: &Telemetry) {
        warn!(pool = %self.pool, worker = %self.worker, pid = self.pid, missed = self.missed,
            max_missed = self.max_missed, "Worker missed a heartbeat.");
        counter!(metric::HEARTBEATS_MISSED_TOTAL, "pool" => self.pool.clone()).increment(1);
        t.publish(|| Event::HeartbeatMissed(self));
    }
}

/// Why the host killed a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// It stopped answering heartbeats.
    Unresponsive,
    /// It did not say `Hello` within `startup_timeout_ms`.
    StartupTimeout,
    /// It broke the wire protocol.
    ProtocolViolation,
    /// It was recycled and did not finish within `drain_timeout_ms`.
    DrainTimeout,
    /// It did not exit within the grace period it was given.
    GraceExpired,
}

impl KillReason {
    /// Bounded label.
    pub fn as_str(self) -> &'static str {
        match self {
            KillReason::Unresponsive => "unresponsive",
            KillReason::StartupTimeout => "startup_timeout",
            KillReason::ProtocolViolation => "protocol_violation",
            KillReason::DrainTimeout => "drain_timeout",
            KillReason::GraceExpired => "grace_expired",
        }
    }
}

/// The host killed a worker (SIGKILL).
#[derive(Debug, Clone)]
pub struct WorkerKilled {
    /// Pool.
    pub pool: String,
    /// Worker id.
    pub worker: String,
    /// OS process id.
    pub pid: u32,
    /// Why.
    pub reason: KillReason,
}

impl WorkerKilled {
    pub(crate) fn emit(self, t: &Telemetry) {
        warn!(pool = %self.pool, worker = %self.worker, pid = self.pid, reason = self.reason.as_str(),
            "Killing worker.");
        counter!(metric::WORKER_KILLS_TOTAL, "pool" => self.pool.clone(), "reason" => self.reason.as_str())
            .increment(1);
        t.publish(|| Event::WorkerKilled(self));
    }
}

/// A pool restarted workers more often than `max_restarts` within
/// `restart_window_ms`.
#[derive(Debug, Clone)]
pub struct PoolDegraded {
    /// Pool.
    pub pool: String,
    /// Restarts within the window.
    pub recent_restarts: u32,
    /// The window.
    pub window: Duration,
    /// Why the last start failed, when one did.
    pub last_error: Option<String>,
}

impl PoolDegraded {
    pub(crate) fn emit(self, t: &Telemetry) {
        tracing::error!(pool = %self.pool, recent_restarts = self.recent_restarts,
            window_ms = self.window.as_millis() as u64,
            last_error = self.last_error.as_deref().unwrap_or(""),
            "Pool is degraded: workers keep failing; restarting at the capped backoff.");
        counter!(metric::POOL_DEGRADATIONS_TOTAL, "pool" => self.pool.clone()).increment(1);
        gauge!(metric::POOL_DEGRADED, "pool" => self.pool.clone()).set(1.0);
        t.publish(|| Event::PoolDegraded(self));
    }
}

/// A degraded pool has every worker up and restarts within its policy again.
#[derive(Debug, Clone)]
pub struct PoolRecovered {
    /// Pool.
    pub pool: String,
    /// How long it was degraded.
    pub degraded_for: Duration,
}

impl PoolRecovered {
    pub(crate) fn emit(self, t: &Telemetry) {
        info!(pool = %self.pool, degraded_ms = self.degraded_for.as_millis() as u64,
            "Pool recovered.");
        gauge!(metric::POOL_DEGRADED, "pool" => self.pool.clone()).set(0.0);
        t.publish(|| Event::PoolRecovered(self));
    }
}

/// Processes left by an earlier host run that died were ended.
#[derive(Debug, Clone)]
pub struct OrphansReaped {
    /// The dead run's id.
    pub run_id: String,
    /// Its host's process id.
    pub host_pid: u32,
    /// The processes ended.
    pub pids: Vec<u32>,
    /// Processes still there after the kill (should be empty).
    pub survivors: Vec<u32>,
}

impl OrphansReaped {
    pub(crate) fn emit(self, t: &Telemetry) {
        warn!(run_id = %self.run_id, host_pid = self.host_pid, reaped = self.pids.len(),
            survivors = self.survivors.len(), "Ended processes left by a dead earlier run.");
        counter!(metric::ORPHANS_REAPED_TOTAL).increment(self.pids.len() as u64);
        t.publish(|| Event::OrphansReaped(self));
    }
}

/// A request whose worker died was sent to another worker (it was marked
/// idempotent).
#[derive(Debug, Clone)]
pub struct RequestRetried {
    /// Pool.
    pub pool: String,
    /// Tool.
    pub tool: String,
    /// The worker that died under it.
    pub failed_worker: String,
}

impl RequestRetried {
    pub(crate) fn emit(self, t: &Telemetry) {
        info!(pool = %self.pool, tool = %self.tool, failed_worker = %self.failed_worker,
            "Retrying an idempotent request on another worker.");
        counter!(metric::REQUEST_RETRIES_TOTAL, "pool" => self.pool.clone()).increment(1);
        t.publish_call(|| Event::RequestRetried(self));
    }
}

/// An idempotent request was not run again elsewhere: its worker ended
/// itself, faulted, hung or broke the protocol while running it, so the
/// request is the likely cause (a query of death).
#[derive(Debug, Clone)]
pub struct RequestRetryWithheld {
    /// Pool.
    pub pool: String,
    /// Tool.
    pub tool: String,
    /// The worker that ended under it.
    pub worker: String,
    /// How that worker ended.
    pub status: ExitStatus,
}

impl RequestRetryWithheld {
    pub(crate) fn emit(self, t: &Telemetry) {
        warn!(pool = %self.pool, tool = %self.tool, worker = %self.worker, status = %self.status,
            "Not retrying an idempotent request: its worker ended itself while running it.");
        counter!(metric::REQUEST_RETRIES_WITHHELD_TOTAL, "pool" => self.pool.clone()).increment(1);
        t.publish_call(|| Event::RequestRetryWithheld(self));
    }
}

/// A worker's host call was refused at once: `max_host_calls` of its calls
/// were running.
#[derive(Debug, Clone)]
pub struct HostCallRejected {
    /// Pool of the calling worker.
    pub pool: String,
    /// The calling worker.
    pub worker: String,
    /// The host tool asked for.
    pub tool: String,
    /// The bound that was reached.
    pub limit: usize,
}

impl HostCallRejected {
    pub(crate) fn emit(self, t: &Telemetry) {
        debug!(pool = %self.pool, worker = %self.worker, tool = %self.tool, limit = self.limit,
            "Refused a host call: the worker has max_host_calls running.");
        counter!(metric::HOST_CALLS_REJECTED_TOTAL, "pool" => self.pool.clone()).increment(1);
        t.publish_call(|| Event::HostCallRejected(self));
    }
}

/// A line a worker wrote to stdout or stderr was longer than the line cap;
/// its first part was forwarded and the rest dropped.
#[derive(Debug, Clone)]
pub struct WorkerOutputTruncated {
    /// Pool.
    pub pool: String,
    /// Worker.
    pub worker: String,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// Bytes dropped.
    pub bytes: u64,
}

impl WorkerOutputTruncated {
    pub(crate) fn emit(self, t: &Telemetry) {
        warn!(pool = %self.pool, worker = %self.worker, stream = self.stream, truncated_bytes = self.bytes,
            "Cut a worker's output line at the line cap.");
        counter!(metric::WORKER_OUTPUT_TRUNCATED_BYTES_TOTAL, "pool" => self.pool.clone(), "stream" => self.stream)
            .increment(self.bytes);
        t.publish(|| Event::WorkerOutputTruncated(self));
    }
}

/// Processes of this run that had left their worker's process group
/// (`setsid`, `start_new_session=True`) were ended: those of one worker when
/// it exited (`worker` set), or of the whole run at shutdown.
#[derive(Debug, Clone)]
pub struct StrayProcessesEnded {
    /// This run.
    pub run_id: String,
    /// The worker that had started them, when one exited.
    pub worker: Option<String>,
    /// The processes ended.
    pub pids: Vec<u32>,
}

impl StrayProcessesEnded {
    pub(crate) fn emit(self, t: &Telemetry) {
        info!(run_id = %self.run_id, worker = self.worker.as_deref().unwrap_or("-"), pids = ?self.pids,
            "Ended processes that had left their worker's process group.");
        counter!(metric::STRAY_PROCESSES_ENDED_TOTAL).increment(self.pids.len() as u64);
        t.publish(|| Event::StrayProcessesEnded(self));
    }
}

/// A caller gave up on a request; the worker was told to cancel it.
#[derive(Debug, Clone)]
pub struct RequestCancelled {
    /// Pool.
    pub pool: String,
    /// Tool.
    pub tool: String,
    /// Where it was: `queued`, `batching` (gathering into a batch, or in one not yet sent) or `running`.
    pub stage: &'static str,
}

impl RequestCancelled {
    pub(crate) fn emit(self, t: &Telemetry) {
        debug!(pool = %self.pool, tool = %self.tool, stage = self.stage, "Request cancelled by its caller.");
        counter!(metric::REQUEST_CANCELLATIONS_TOTAL, "pool" => self.pool.clone(), "stage" => self.stage)
            .increment(1);
        t.publish_call(|| Event::RequestCancelled(self));
    }
}

/// Calls to a batched tool left the batching window as one batch.
#[derive(Debug, Clone)]
pub struct BatchFormed {
    /// Pool.
    pub pool: String,
    /// Tool.
    pub tool: String,
    /// Calls in the batch.
    pub size: usize,
    /// How long its first call waited for the others.
    pub waited: Duration,
    /// Why it left: `full`, `bytes` (one more call would not fit in a
    /// frame), `max_wait` or `flushed`.
    pub reason: &'static str,
}

impl BatchFormed {
    pub(crate) fn emit(self, t: &Telemetry) {
        trace!(pool = %self.pool, tool = %self.tool, size = self.size,
            waited_us = self.waited.as_micros() as u64, reason = self.reason, "Batch formed.");
        t.publish_call(|| Event::BatchFormed(self));
    }
}

/// An autoscaled pool changed its target size.
#[derive(Debug, Clone)]
pub struct PoolScaled {
    /// Pool.
    pub pool: String,
    /// Target size before.
    pub from: usize,
    /// Target size now.
    pub to: usize,
    /// Why: `queue_wait`, `queue_depth`, `idle`, `cold_start` or `prestart`.
    pub reason: &'static str,
}

impl PoolScaled {
    pub(crate) fn emit(self, t: &Telemetry) {
        info!(pool = %self.pool, from = self.from, to = self.to, reason = self.reason,
            "Pool scaled.");
        counter!(metric::POOL_SCALE_EVENTS_TOTAL, "pool" => self.pool.clone(),
            "direction" => if self.to > self.from { "up" } else { "down" }, "reason" => self.reason)
        .increment(1);
        gauge!(metric::POOL_TARGET_SIZE, "pool" => self.pool.clone()).set(self.to as f64);
        t.publish(|| Event::PoolScaled(self));
    }
}

/// A session ended (released, expired, or its last auto handle dropped).
#[derive(Debug, Clone)]
pub struct SessionReleased {
    /// The session.
    pub session_id: String,
    /// `manual`, `ttl` or `dropped`.
    pub source: &'static str,
    /// Whether every worker dropped its state for it.
    pub clean: bool,
}

impl SessionReleased {
    pub(crate) fn emit(self, t: &Telemetry) {
        debug!(session_id = %self.session_id, source = self.source, clean = self.clean,
            "Session released.");
        counter!(metric::SESSIONS_RELEASED_TOTAL, "source" => self.source).increment(1);
        t.publish(|| Event::SessionReleased(self));
    }
}

/// Releasing a session left state behind on a worker: the worker was gone,
/// did not answer within the cleanup timeout, or its `on_session_release`
/// hook raised.
#[derive(Debug, Clone)]
pub struct SessionCleanupError {
    /// The session.
    pub session_id: String,
    /// `manual`, `ttl` or `dropped`.
    pub source: &'static str,
    /// The pool whose worker failed.
    pub pool: String,
    /// What went wrong.
    pub reason: String,
}

impl SessionCleanupError {
    pub(crate) fn emit(self, t: &Telemetry) {
        warn!(session_id = %self.session_id, source = self.source, pool = %self.pool,
            reason = %self.reason, "Session cleanup failed.");
        counter!(metric::SESSION_CLEANUP_ERRORS_TOTAL, "source" => self.source).increment(1);
        t.publish(|| Event::SessionCleanupError(self));
    }
}

/// An event or span from Python (`snakepit_bridge.telemetry.emit` / `span`).
#[derive(Debug, Clone)]
pub struct PythonEvent {
    /// Pool.
    pub pool: String,
    /// Worker id.
    pub worker: String,
    /// The request the Python code was serving (0 outside one).
    pub request_id: u64,
    /// The event or span name, as Python gave it.
    pub name: String,
    /// Numbers attached to it.
    pub measurements: Vec<(String, f64)>,
    /// Anything else attached (including the request's `traceparent`, for
    /// spans, so that they nest under the caller's trace).
    pub metadata: Vec<(String, snakepit_proto::Value)>,
    /// How long the span took; `None` for a plain event.
    pub duration: Option<Duration>,
}

impl PythonEvent {
    /// The correlation id Python attached (its `correlation_id` metadata:
    /// the request's, or one the code chose).
    pub fn correlation_id(&self) -> Option<&str> {
        self.metadata.iter().find_map(|(k, v)| match v {
            snakepit_proto::Value::Str(s) if k == "correlation_id" => Some(s.as_str()),
            _ => None,
        })
    }
}

/// Python chooses event names; metric labels must stay bounded. The first
/// names seen get their own series, later ones share `other`.
const PYTHON_EVENT_NAMES: usize = 64;

fn bounded_python_name(name: &str) -> String {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .expect("python event names lock");
    if seen.contains(name) {
        return name.to_string();
    }
    if seen.len() < PYTHON_EVENT_NAMES {
        seen.insert(name.to_string());
        return name.to_string();
    }
    "other".to_string()
}

impl PythonEvent {
    pub(crate) fn emit(self, t: &Telemetry) {
        let label = bounded_python_name(&self.name);
        debug!(pool = %self.pool, worker = %self.worker, request_id = self.request_id,
            name = %self.name, duration_us = self.duration.map(|d| d.as_micros() as u64),
            "Python telemetry.");
        counter!(metric::PYTHON_EVENTS_TOTAL, "pool" => self.pool.clone(), "event" => label.clone())
            .increment(1);
        if let Some(duration) = self.duration {
            histogram!(metric::PYTHON_SPAN_DURATION, "pool" => self.pool.clone(), "span" => label)
                .record(duration.as_secs_f64());
        }
        t.publish_call(|| Event::PythonEvent(self));
    }
}
