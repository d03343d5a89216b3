//! The typed events. Names follow `snakepit.<area>.<noun>.<verb>`.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use tracing::{debug, info, warn};

use super::{Telemetry, metric};
use crate::error::ExitStatus;

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
}

impl ExitCause {
    /// Bounded label.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitCause::Shutdown => "shutdown",
            ExitCause::Crashed => "crashed",
            ExitCause::ProtocolViolation => "protocol_violation",
            ExitCause::StartupFailed => "startup_failed",
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
        counter!("snakepit_worker_restarts_total", "pool" => self.pool.clone()).increment(1);
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
        t.publish(|| Event::RequestStarted(self));
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
}

impl RequestStopped {
    pub(crate) fn emit(self, t: &Telemetry) {
        debug!(pool = %self.pool, tool = %self.tool, outcome = self.outcome,
            duration_us = self.duration.as_micros() as u64, "Request finished.");
        counter!(metric::REQUESTS_TOTAL, "pool" => self.pool.clone(), "tool" => self.tool.clone(),
            "outcome" => self.outcome)
        .increment(1);
        histogram!(metric::REQUEST_DURATION, "pool" => self.pool.clone(), "tool" => self.tool.clone())
            .record(self.duration.as_secs_f64());
        t.publish(|| Event::RequestStopped(self));
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
}

impl RequestException {
    pub(crate) fn emit(self, t: &Telemetry) {
        debug!(pool = %self.pool, tool = %self.tool, python_type = %self.python_type,
            message = %self.message, "Tool raised a Python exception.");
        t.publish(|| Event::RequestException(self));
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
        t.publish(|| Event::QueueSaturated(self));
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
        t.publish(|| Event::QueueTimedOut(self));
    }
}
