//! Errors as gRPC statuses, in one place: the code each kind of
//! [`Error`](crate::Error) maps to, and the structured details every failed
//! call carries (`grpc-status-details-bin`: a `google.rpc.Status` holding one
//! `google.rpc.ErrorInfo`, domain `snakepit`, reason the kind in upper case,
//! metadata `kind`, `message`, and when they apply `python_type`,
//! `traceback`, `parameter`, `constraint`). The kind is `Error::outcome()`,
//! or `unauthenticated` for a refused token.
//!
//! Sizes are bounded so that clients take the trailers: the message to
//! 1 KiB, the traceback to its last 4 KiB, and both together to what fits
//! in [`TRAILER_BUDGET`] (grpcio refuses trailers over 8 KiB by default);
//! the traceback gives way first.
//!
//! Called by the RPC handlers (`service.rs`, `observe.rs`) and the gate
//! (`auth.rs`).

use std::collections::HashMap;

use snakepit_actors::variables::VariableError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::Error;

/// The ErrorInfo domain of every status the server makes.
pub(crate) const DOMAIN: &str = "snakepit";

/// The kind of a refused token.
pub(crate) const UNAUTHENTICATED: &str = "unauthenticated";

/// Longest status message, in bytes.
const MESSAGE_MAX: usize = 1024;

/// Longest traceback, in bytes (its end is kept: the frame that raised).
const TRACEBACK_MAX: usize = 4096;

/// What the status message (percent-encoded) and the details (base64)
/// together may take in the trailers.
pub(crate) const TRAILER_BUDGET: usize = 7 * 1024;

/// The code a failure maps to.
pub(crate) fn code_of(err: &Error) -> Code {
    match err {
        Error::Python(_) | Error::ShapeMismatch { .. } | Error::DtypeMismatch { .. } => {
            Code::Unknown
        }
        Error::OutOfMemory { .. } => Code::ResourceExhausted,
        Error::UnknownTool { .. }
        | Error::UnknownPool(_)
        | Error::RefNotFound { .. }
        | Error::SessionNotFound(_) => Code::NotFound,
        Error::Variable(var) => match var {
            VariableError::NotFound { .. } => Code::NotFound,
            VariableError::AlreadyExists { .. } => Code::AlreadyExists,
            VariableError::TooMany { .. } => Code::ResourceExhausted,
            _ => Code::InvalidArgument,
        },
        Error::BadArguments { .. }
        | Error::SessionMismatch { .. }
        | Error::Encoding { .. }
        | Error::Conversion(_) => Code::InvalidArgument,
        Error::MissingVariables { .. } => Code::FailedPrecondition,
        Error::PoolSaturated { .. }
        | Error::SessionQuotaExceeded { .. }
        | Error::PayloadTooLarge { .. }
        | Error::SharedMemoryExhausted { .. } => Code::ResourceExhausted,
        Error::WorkerBusy { .. }
        | Error::PoolDegraded { .. }
        | Error::ShuttingDown
        | Error::WorkerStartFailed { .. } => Code::Unavailable,
        Error::WorkerCrashed { .. } | Error::SessionWorkerUnavailable { .. } => Code::Aborted,
        Error::Timeout { .. } | Error::QueueTimeout { .. } => Code::DeadlineExceeded,
        Error::Cancelled => Code::Cancelled,
        // host_tool, protocol, session_cleanup_failed, config, environment,
        // untrusted_path, and kinds added later.
        _ => Code::Internal,
    }
}

/// The status of a failed call.
pub(crate) fn status(err: &Error) -> Status {
    let mut info = Info::new(err.outcome(), err.to_string());
    if let Some(exc) = err.python_exception() {
        // The status message says what happened ("python raised
        // ValueError: ..."); the details carry Python's own text, as the
        // worker's Error frame does.
        info.message = head(&exc.message, MESSAGE_MAX);
        info.python_type = Some(exc.python_type.clone());
        info.traceback = Some(exc.traceback.clone());
    }
    match err {
        Error::BadArguments {
            parameter: Some(p), ..
        } => info.parameter = Some(p.clone()),
        Error::Variable(VariableError::Constraint { constraint, .. }) => {
            info.constraint = Some(constraint.clone());
        }
        _ => {}
    }
    info.into_status(code_of(err))
}

/// The status of a call refused for its token.
pub(crate) fn unauthenticated(message: &str) -> Status {
    Info::new(UNAUTHENTICATED, message.to_string()).into_status(Code::Unauthenticated)
}

/// The status code as gRPC names it (`OK`, `NOT_FOUND`, ...): a bounded
/// metric label.
pub(crate) fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// What goes into the ErrorInfo.
struct Info {
    kind: &'static str,
    /// The status message: the error as snakepit words it.
    summary: String,
    /// The details' `message`: Python's own text when Python raised, else
    /// the summary.
    message: String,
    python_type: Option<String>,
    traceback: Option<String>,
    parameter: Option<String>,
    constraint: Option<String>,
}

impl Info {
    fn new(kind: &'static str, message: String) -> Self {
        Self {
            kind,
            summary: head(&message, MESSAGE_MAX),
            message: head(&message, MESSAGE_MAX),
            python_type: None,
            traceback: None,
            parameter: None,
            constraint: None,
        }
    }

    fn into_status(self, code: Code) -> Status {
        let mut room = TRACEBACK_MAX;
        loop {
            let status = self.build(code, room);
            let size = percent_encoded_len(status.message()) + base64_len(status.details().len());
            if size <= TRAILER_BUDGET || room == 0 {
                return status;
            }
            // Base64 grows 4:3; give the traceback back what is over.
            room = room.saturating_sub((size - TRAILER_BUDGET) * 3 / 4 + 16);
        }
    }

    fn build(&self, code: Code, traceback_room: usize) -> Status {
        let mut metadata = HashMap::from([
            ("kind".to_string(), self.kind.to_string()),
            ("message".to_string(), self.message.clone()),
        ]);
        let optional = [
            ("python_type", self.python_type.clone()),
            (
                "traceback",
                self.traceback.as_deref().map(|t| tail(t, traceback_room)),
            ),
            ("parameter", self.parameter.clone()),
            ("constraint", self.constraint.clone()),
        ];
        for (key, value) in optional {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                metadata.insert(key.to_string(), value);
            }
        }
        let reason = self.kind.to_ascii_uppercase();
        Status::with_error_details(
            code,
            self.summary.clone(),
            ErrorDetails::with_error_info(reason, DOMAIN, metadata),
        )
    }
}

/// At most `max` bytes of the start of `text`, cut at a character boundary.
fn head(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// At most `max` bytes of the end of `text`, cut at a character boundary.
fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// The size of `message` in the `grpc-message` trailer: bytes outside
/// printable ASCII, and `%`, are percent-encoded.
fn percent_encoded_len(message: &str) -> usize {
    message
        .bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                1
            } else {
                3
            }
        })
        .sum()
}

fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

#[cfg(test)]
mod tests;
