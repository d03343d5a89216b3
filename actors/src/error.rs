//! The one error type callers see. Every failure a call can meet is a variant
//! with the context needed to act on it; nothing is classified by matching
//! strings. The `snakepit` crate re-exports it as `snakepit::Error`.

use std::fmt;
use std::time::Duration;

use snakepit_proto::{ConversionError, v1};

/// An exception raised in Python, as it crossed the boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonException {
    /// Exception class name, e.g. `ValueError`.
    pub python_type: String,
    /// `str(exception)`.
    pub message: String,
    /// The formatted Python traceback.
    pub traceback: String,
    /// Module of the exception class, when known.
    pub module: Option<String>,
}

impl fmt::Display for PythonException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.python_type, self.message)
    }
}

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
    /// Not known (the process could not be waited for).
    Unknown,
}

impl From<std::process::ExitStatus> for ExitStatus {
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus::Code(code),
            (None, Some(sig)) => ExitStatus::Signal(sig),
            _ => ExitStatus::Unknown,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s} ({})", signal_name(*s)),
            ExitStatus::Unknown => write!(f, "unknown exit status"),
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGINT => "SIGINT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGPIPE => "SIGPIPE",
        _ => "other",
    }
}

/// Everything that can go wrong with a call, a pool or the runtime.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The tool raised a Python exception.
    #[error("python raised {0}")]
    Python(PythonException),
    /// The pool's adapter has no such tool.
    #[error("unknown tool `{tool}` in pool `{pool}`: {message}")]
    UnknownTool {
        /// Pool asked.
        pool: String,
        /// Tool asked for.
        tool: String,
        /// The worker's explanation (lists the tools it has).
        message: String,
    },
    /// The arguments did not fit the tool's signature or annotations.
    #[error("bad arguments for `{tool}`: {message}")]
    BadArguments {
        /// Tool called.
        tool: String,
        /// The parameter at fault, when there is one.
        parameter: Option<String>,
        /// What was wrong.
        message: String,
    },
    /// The pool's queue is full.
    #[error("pool `{pool}` is saturated: its queue of {capacity} is full")]
    PoolSaturated {
        /// Pool asked.
        pool: String,
        /// Queue capacity.
        capacity: usize,
    },
    /// The pool restarted its workers more often than its restart policy
    /// allows, and no worker is up right now.
    #[error("pool `{pool}` is degraded: {restarts} restarts within {window:?} and no worker is up{}", detail_suffix(.last_error))]
    PoolDegraded {
        /// Pool asked.
        pool: String,
        /// Restarts within the window.
        restarts: u32,
        /// The restart window.
        window: Duration,
        /// Why the last worker failed to start, when it did (Python's error text).
        last_error: Option<String>,
    },
    /// A strict-affinity call found its session's worker without a free slot.
    #[error("worker {worker} of pool `{pool}`, which holds session `{session}`, is busy")]
    WorkerBusy {
        /// Pool asked.
        pool: String,
        /// The session's worker.
        worker: String,
        /// The session.
        session: String,
    },
    /// A strict-affinity call's session lived on a worker that is gone (it
    /// died or was recycled): its in-memory state went with it.
    #[error(
        "session `{session}` lived on worker {worker} of pool `{pool}`, which is gone with the session's state"
    )]
    SessionWorkerUnavailable {
        /// Pool asked.
        pool: String,
        /// The worker that held the session.
        worker: String,
        /// The session.
        session: String,
    },
    /// The runtime holds `max_sessions` sessions already.
    #[error("no room for another session: {max} are live")]
    SessionQuotaExceeded {
        /// The limit.
        max: usize,
    },
    /// No live session has this id (it was released or expired).
    #[error("no session `{0}`")]
    SessionNotFound(String),
    /// A session variable operation failed: no such variable, a constraint
    /// broken, a bad definition.
    #[error(transparent)]
    Variable(#[from] crate::variables::VariableError),
    /// Registering or running a host tool failed.
    #[error(transparent)]
    HostTool(#[from] crate::host_tools::HostToolError),
    /// Releasing a session left state behind on a worker (it was dead, did
    /// not answer in time, or its `on_session_release` hook raised). The
    /// event `snakepit.session.cleanup.error` says the same.
    #[error("session `{session}` was released, but its cleanup failed: {reason}")]
    SessionCleanupFailed {
        /// The session.
        session: String,
        /// What went wrong, per pool.
        reason: String,
    },
    /// The tool needs session variables that are not registered.
    #[error("tool `{tool}` needs session variables that are not registered: {}", .missing.join(", "))]
    MissingVariables {
        /// Tool called.
        tool: String,
        /// The variables missing.
        missing: Vec<String>,
    },
    /// The request waited longer than the queue timeout for a worker.
    #[error("request waited {waited:?} in the queue of pool `{pool}` without a free worker")]
    QueueTimeout {
        /// Pool asked.
        pool: String,
        /// How long it waited.
        waited: Duration,
    },
    /// The call did not finish within its timeout; the worker was told to cancel it.
    #[error("call to `{tool}` timed out after {after:?}")]
    Timeout {
        /// Tool called.
        tool: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The worker running the request died.
    #[error("worker {worker} of pool `{pool}` died ({status}) while running the request{}", detail_suffix(.detail))]
    WorkerCrashed {
        /// Pool of the worker.
        pool: String,
        /// Worker id.
        worker: String,
        /// How its process ended.
        status: ExitStatus,
        /// What else is known (a protocol violation, the last stderr line...).
        detail: Option<String>,
    },
    /// A frame would exceed the configured maximum frame size.
    #[error("payload of {size} bytes exceeds the frame limit of {limit} bytes")]
    PayloadTooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A value could not cross the boundary.
    #[error("value could not be encoded: {message}")]
    Encoding {
        /// What could not be converted, and where.
        message: String,
    },
    /// A result did not convert into the Rust type asked for.
    #[error(transparent)]
    Conversion(#[from] ConversionError),
    /// No pool of that name.
    #[error("unknown pool `{0}`")]
    UnknownPool(String),
    /// The runtime or pool no longer takes requests.
    #[error("the runtime is shutting down")]
    ShuttingDown,
    /// The request was cancelled before it finished.
    #[error("the request was cancelled")]
    Cancelled,
    /// A worker could not be started.
    #[error("worker of pool `{pool}` failed to start: {reason}")]
    WorkerStartFailed {
        /// Pool of the worker.
        pool: String,
        /// What went wrong, including Python's own error text when it raised.
        reason: String,
        /// The Python exception, when the adapter failed to import.
        python: Option<Box<PythonException>>,
    },
    /// A peer broke the wire protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The configuration is invalid.
    #[error("configuration error: {0}")]
    Config(String),
    /// The Python environment is missing or unusable.
    #[error("python environment: {0}")]
    Environment(String),
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

impl Error {
    /// A short, bounded label for metrics (`ok` is not an error).
    pub fn outcome(&self) -> &'static str {
        match self {
            Error::Python(_) => "python_exception",
            Error::UnknownTool { .. } => "unknown_tool",
            Error::BadArguments { .. } => "bad_arguments",
            Error::PoolSaturated { .. } => "saturated",
            Error::PoolDegraded { .. } => "pool_degraded",
            Error::WorkerBusy { .. } => "worker_busy",
            Error::SessionWorkerUnavailable { .. } => "session_worker_unavailable",
            Error::SessionQuotaExceeded { .. } => "session_quota_exceeded",
            Error::SessionNotFound(_) => "session_not_found",
            Error::MissingVariables { .. } => "missing_variables",
            Error::Variable(_) => "variable",
            Error::HostTool(_) => "host_tool",
            Error::SessionCleanupFailed { .. } => "session_cleanup_failed",
            Error::QueueTimeout { .. } => "queue_timeout",
            Error::Timeout { .. } => "timeout",
            Error::WorkerCrashed { .. } => "worker_crashed",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::Encoding { .. } => "encoding",
            Error::Conversion(_) => "conversion",
            Error::UnknownPool(_) => "unknown_pool",
            Error::ShuttingDown => "shutting_down",
            Error::Cancelled => "cancelled",
            Error::WorkerStartFailed { .. } => "start_failed",
            Error::Protocol(_) => "protocol",
            Error::Config(_) => "config",
            Error::Environment(_) => "environment",
        }
    }

    /// Turns an `Error` frame from a worker into the matching variant.
    pub(crate) fn from_wire(err: v1::Error, pool: &str, tool: &str) -> Self {
        use v1::ErrorKind as K;
        let kind = K::try_from(err.kind).unwrap_or(K::Unspecified);
        match kind {
            K::UnknownTool => Error::UnknownTool {
                pool: pool.to_string(),
                tool: tool.to_string(),
                message: err.message,
            },
            K::BadArguments => Error::BadArguments {
                tool: tool.to_string(),
                parameter: (!err.parameter.is_empty()).then_some(err.parameter),
                message: err.message,
            },
            K::Cancelled => Error::Cancelled,
            K::PayloadTooLarge => {
                let num = |k: &str| err.details.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
                Error::PayloadTooLarge {
                    size: num("size"),
                    limit: num("limit"),
                }
            }
            K::Encoding => Error::Encoding {
                message: err.message,
            },
            K::ShuttingDown => Error::ShuttingDown,
            K::Protocol => Error::Protocol(err.message),
            K::StartupFailed => Error::WorkerStartFailed {
                pool: pool.to_string(),
                reason: format!("{}: {}", err.python_type, err.message),
                python: Some(Box::new(python_exception(err))),
            },
            // The host's own kinds (host tools, variables) only travel to the
            // worker; one coming back is a Python exception like any other.
            K::PythonException
            | K::Unspecified
            | K::HostTool
            | K::NotFound
            | K::Constraint
            | K::Timeout => Error::Python(python_exception(err)),
        }
    }
}

pub(crate) fn python_exception(mut err: v1::Error) -> PythonException {
    PythonException {
        python_type: err.python_type,
        message: err.message,
        traceback: err.traceback,
        module: err.details.remove("module"),
    }
}
