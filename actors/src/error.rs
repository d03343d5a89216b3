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

pub use crate::process::ExitStatus;

/// Everything that can go wrong with a call, a pool or the runtime.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The tool raised a Python exception.
    #[error("python raised {0}")]
    Python(PythonException),
    /// A shape mismatch recognised in a Python exception (numpy broadcasting,
    /// a matrix product, a torch size check).
    #[error("shape mismatch in {operation}: {shape_a:?} vs {shape_b:?} ({exception})")]
    ShapeMismatch {
        /// The operation, e.g. `broadcast` or `matmul`.
        operation: String,
        /// The first operand's shape.
        shape_a: Vec<u64>,
        /// The second operand's shape.
        shape_b: Vec<u64>,
        /// The exception as Python raised it.
        exception: Box<PythonException>,
    },
    /// An out-of-memory failure recognised in a Python exception.
    #[error("out of memory on {device}{} ({exception})", mib_suffix(*.requested_mib, *.free_mib))]
    OutOfMemory {
        /// Where: `cpu`, `cuda:0`, ...
        device: String,
        /// What the failed allocation asked for, in MiB, when Python said.
        requested_mib: Option<f64>,
        /// What was free, in MiB, when Python said.
        free_mib: Option<f64>,
        /// The exception as Python raised it.
        exception: Box<PythonException>,
    },
    /// A dtype mismatch recognised in a Python exception.
    #[error("dtype mismatch: expected {expected}, got {got} ({exception})")]
    DtypeMismatch {
        /// The dtype the operation wanted.
        expected: String,
        /// The dtype it got.
        got: String,
        /// The exception as Python raised it.
        exception: Box<PythonException>,
    },
    /// An object ref that its worker does not hold (any more): released,
    /// evicted by the session's `max_refs`, expired, or its worker is gone.
    #[error("ref `{ref_id}` not found: {reason}")]
    RefNotFound {
        /// The ref asked for.
        ref_id: String,
        /// Its session.
        session: String,
        /// Why, as far as known.
        reason: String,
    },
    /// A ref of one session used in a call of another.
    #[error(
        "ref `{ref_id}` belongs to session `{ref_session}`, not to the calling session `{call_session}`"
    )]
    SessionMismatch {
        /// The ref.
        ref_id: String,
        /// The session that owns it.
        ref_session: String,
        /// The session of the call (empty: none).
        call_session: String,
    },
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
    #[error("pool `{pool}` is degraded: {}no worker is up{}", restarts_part(*.restarts, .window), detail_suffix(.last_error))]
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
    /// A shared-memory arena is full (`max_shared_bytes`): nothing was
    /// sent; retrying once other arrays are dropped may work.
    #[error(
        "shared memory is full: {requested} more bytes asked of an arena of {capacity} bytes, {in_use} in use (max_shared_bytes)"
    )]
    SharedMemoryExhausted {
        /// Bytes asked for.
        requested: u64,
        /// The arena's size.
        capacity: u64,
        /// Bytes allocated at the time.
        in_use: u64,
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
    /// A directory snakepit acts on (the run registry, the venv) is owned by
    /// another user or writable by group or others.
    #[error(transparent)]
    UntrustedPath(#[from] crate::reaper::UntrustedPath),
}

fn mib_suffix(requested: Option<f64>, free: Option<f64>) -> String {
    match (requested, free) {
        (Some(r), Some(f)) => format!(": {r:.1} MiB requested, {f:.1} MiB free"),
        (Some(r), None) => format!(": {r:.1} MiB requested"),
        (None, Some(f)) => format!(": {f:.1} MiB free"),
        (None, None) => String::new(),
    }
}

/// `N restarts within W and ` when there were restarts (a remote pool no
/// agent serves may have none).
fn restarts_part(restarts: u32, window: &Duration) -> String {
    if restarts == 0 {
        String::new()
    } else {
        format!("{restarts} restarts within {window:?} and ")
    }
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
            Error::ShapeMismatch { .. } => "shape_mismatch",
            Error::OutOfMemory { .. } => "out_of_memory",
            Error::DtypeMismatch { .. } => "dtype_mismatch",
            Error::RefNotFound { .. } => "ref_not_found",
            Error::SessionMismatch { .. } => "session_mismatch",
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
            Error::SharedMemoryExhausted { .. } => "shared_memory_exhausted",
            Error::Encoding { .. } => "encoding",
            Error::Conversion(_) => "conversion",
            Error::UnknownPool(_) => "unknown_pool",
            Error::ShuttingDown => "shutting_down",
            Error::Cancelled => "cancelled",
            Error::WorkerStartFailed { .. } => "start_failed",
            Error::Protocol(_) => "protocol",
            Error::Config(_) => "config",
            Error::Environment(_) => "environment",
            Error::UntrustedPath(_) => "untrusted_path",
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
            K::BadArguments if detail(&err, "what") == Some("session_mismatch") => {
                Error::SessionMismatch {
                    ref_id: detail(&err, "ref_id").unwrap_or_default().to_string(),
                    ref_session: detail(&err, "ref_session").unwrap_or_default().to_string(),
                    call_session: detail(&err, "call_session").unwrap_or_default().to_string(),
                }
            }
            K::NotFound if detail(&err, "what") == Some("ref") => Error::RefNotFound {
                ref_id: detail(&err, "ref_id").unwrap_or_default().to_string(),
                session: detail(&err, "session_id").unwrap_or_default().to_string(),
                // `released`, `evicted by max_refs`, `expired`...; else Python's sentence.
                reason: detail(&err, "reason").map_or(err.message.clone(), str::to_string),
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
            K::SharedMemoryExhausted => {
                let num = |k: &str| err.details.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
                Error::SharedMemoryExhausted {
                    requested: num("requested"),
                    capacity: num("capacity"),
                    in_use: num("in_use"),
                }
            }
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
            | K::Timeout
            | K::Busy => translate(python_exception_keeping(&err), &err),
        }
    }

    /// The Python exception behind this error, if it came from one.
    pub fn python_exception(&self) -> Option<&PythonException> {
        match self {
            Error::Python(e) => Some(e),
            Error::ShapeMismatch { exception: e, .. }
            | Error::OutOfMemory { exception: e, .. }
            | Error::DtypeMismatch { exception: e, .. } => Some(e),
            _ => None,
        }
    }
}

fn detail<'a>(err: &'a v1::Error, key: &str) -> Option<&'a str> {
    err.details.get(key).map(String::as_str)
}

fn python_exception_keeping(err: &v1::Error) -> PythonException {
    PythonException {
        python_type: err.python_type.clone(),
        message: err.message.clone(),
        traceback: err.traceback.clone(),
        module: err.details.get("module").cloned(),
    }
}

/// The typed variant for a machine-learning failure the worker recognised
/// (`details.ml_error`, with its fields parsed in Python), else `Python`.
fn translate(python: PythonException, err: &v1::Error) -> Error {
    let shape = |key: &str| -> Vec<u64> {
        detail(err, key)
            .unwrap_or_default()
            .split(',')
            .filter_map(|d| d.trim().parse().ok())
            .collect()
    };
    let mib = |key: &str| detail(err, key).and_then(|v| v.parse::<f64>().ok());
    let text = |key: &str| detail(err, key).unwrap_or_default().to_string();
    match detail(err, "ml_error") {
        Some("shape_mismatch") => Error::ShapeMismatch {
            operation: text("operation"),
            shape_a: shape("shape_a"),
            shape_b: shape("shape_b"),
            exception: Box::new(python),
        },
        Some("out_of_memory") => Error::OutOfMemory {
            device: text("device"),
            requested_mib: mib("requested_mib"),
            free_mib: mib("free_mib"),
            exception: Box::new(python),
        },
        Some("dtype_mismatch") => Error::DtypeMismatch {
            expected: text("expected"),
            got: text("got"),
            exception: Box::new(python),
        },
        _ => Error::Python(python),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn python_error(kind: v1::ErrorKind, details: &[(&str, &str)]) -> v1::Error {
        v1::Error {
            kind: kind as i32,
            python_type: "RuntimeError".into(),
            message: "boom".into(),
            traceback: "Traceback ...".into(),
            parameter: String::new(),
            details: details
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn translated(details: &[(&str, &str)]) -> Error {
        Error::from_wire(
            python_error(v1::ErrorKind::PythonException, details),
            "p",
            "t",
        )
    }

    #[test]
    fn recognised_ml_failures_become_typed_variants_that_keep_the_exception() {
        match translated(&[
            ("ml_error", "shape_mismatch"),
            ("operation", "matmul"),
            ("shape_a", "2,3"),
            ("shape_b", "4, 5"),
            ("module", "builtins"),
        ]) {
            Error::ShapeMismatch {
                operation,
                shape_a,
                shape_b,
                exception,
            } => {
                assert_eq!(operation, "matmul");
                assert_eq!((shape_a, shape_b), (vec![2, 3], vec![4, 5]));
                assert_eq!(exception.python_type, "RuntimeError");
                assert_eq!(exception.module.as_deref(), Some("builtins"));
            }
            other => panic!("{other:?}"),
        }
        let oom = translated(&[
            ("ml_error", "out_of_memory"),
            ("device", "cuda:0"),
            ("requested_mib", "2048"),
            ("free_mib", "1228.8"),
        ]);
        assert_eq!(oom.outcome(), "out_of_memory");
        assert!(
            oom.to_string()
                .contains("2048.0 MiB requested, 1228.8 MiB free"),
            "{oom}"
        );
        match oom {
            Error::OutOfMemory {
                device,
                requested_mib,
                free_mib,
                ..
            } => assert_eq!(
                (device.as_str(), requested_mib, free_mib),
                ("cuda:0", Some(2048.0), Some(1228.8))
            ),
            other => panic!("{other:?}"),
        }
        // A field Python could not parse is simply absent.
        match translated(&[("ml_error", "out_of_memory"), ("device", "cpu")]) {
            Error::OutOfMemory {
                requested_mib: None,
                free_mib: None,
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        match translated(&[
            ("ml_error", "dtype_mismatch"),
            ("expected", "float32"),
            ("got", "float64"),
        ]) {
            Error::DtypeMismatch { expected, got, .. } => {
                assert_eq!((expected.as_str(), got.as_str()), ("float32", "float64"))
            }
            other => panic!("{other:?}"),
        }
        let plain = translated(&[("ml_error", "something_new")]);
        assert!(matches!(plain, Error::Python(_)), "{plain:?}");
        assert_eq!(plain.python_exception().unwrap().message, "boom");
    }

    #[test]
    fn ref_errors_from_the_worker_are_typed() {
        let gone = Error::from_wire(
            python_error(
                v1::ErrorKind::NotFound,
                &[
                    ("what", "ref"),
                    ("ref_id", "p-0.1/7"),
                    ("session_id", "s"),
                    ("reason", "evicted by max_refs"),
                ],
            ),
            "p",
            snakepit_ffi_attr(),
        );
        assert_eq!(
            gone.to_string(),
            "ref `p-0.1/7` not found: evicted by max_refs"
        );
        let mismatch = Error::from_wire(
            python_error(
                v1::ErrorKind::BadArguments,
                &[
                    ("what", "session_mismatch"),
                    ("ref_id", "p-0.1/7"),
                    ("ref_session", "a"),
                    ("call_session", "b"),
                ],
            ),
            "p",
            snakepit_ffi_attr(),
        );
        assert_eq!(mismatch.outcome(), "session_mismatch");
        // Other not-found answers stay what they were.
        let other = Error::from_wire(
            python_error(v1::ErrorKind::NotFound, &[("what", "helper")]),
            "p",
            "t",
        );
        assert!(matches!(other, Error::Python(_)), "{other:?}");
    }

    fn snakepit_ffi_attr() -> &'static str {
        crate::ffi::ops::ATTR
    }
}
