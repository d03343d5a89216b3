//! Messages the worker actor receives: from its connection's reader task,
//! from the task waiting on its process, from timers, and from its pool.

use ractor::RpcReplyPort;
use snakepit_proto::v1;

use crate::error::ExitStatus;
use crate::telemetry::{ExitCause, KillReason};
use crate::wire::Closed;

/// What a worker actor is told.
pub enum WorkerMessage {
    /// The worker's first frame.
    Hello(v1::Hello),
    /// The worker could not load its adapter.
    StartupFailed(v1::Error),
    /// The worker answered heartbeat `seq`.
    Pong(u64),
    /// Time for the periodic checks: heartbeat, age, memory.
    Tick,
    /// The connection ended.
    ConnectionClosed(Closed),
    /// The process ended and was reaped.
    Exited(ExitStatus),
    /// What was left of the process group is gone.
    GroupEnded,
    /// The start-up deadline passed.
    StartupDeadline,
    /// The grace period after a close or shutdown request passed.
    KillDeadline,
    /// The process ended a while ago but its connection has not reported its
    /// end: stop waiting for the last frames.
    ExitSettled,
    /// The agent running the (remote) process started it.
    RemoteStarted(u32),
    /// The agent running the (remote) process is draining.
    RemoteDraining(std::time::Duration),
    /// The remote process ended, or the link to its agent did (`lost`).
    RemoteExited {
        /// How it ended, when the agent said.
        status: ExitStatus,
        /// What the agent or the host knows of why.
        detail: String,
        /// The agent's link ended, not the process.
        lost: bool,
    },
    /// Kill the process now.
    Kill(KillReason),
    /// Finish in-flight work within `grace`, then exit; replies once the
    /// process and its group are gone.
    Stop {
        /// How long in-flight requests may take.
        grace: std::time::Duration,
        /// Why it is stopped (shutdown or recycling).
        cause: ExitCause,
        /// Answered when the process is gone.
        reply: Option<RpcReplyPort<()>>,
    },
}
