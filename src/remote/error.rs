//! [`RemoteError`]: what a call through [`RemoteClient`](super::RemoteClient)
//! fails with, and the one place a gRPC status is read back into snakepit's
//! terms (the `google.rpc.ErrorInfo` the server attaches, see
//! `proto/snakepit/v1/service.proto`).

use std::collections::HashMap;
use std::fmt;

use tonic::Code;
use tonic_types::StatusExt as _;

use crate::Error;

/// The `ErrorInfo` domain of the errors snakepit's server attaches.
pub(crate) const ERROR_DOMAIN: &str = "snakepit";

/// A call through [`RemoteClient`](super::RemoteClient) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The target or the options cannot make an endpoint (a bad address,
    /// TLS settings for a plain or Unix-socket target, a token that is not a
    /// valid header value).
    #[error("invalid target `{target}`: {reason}")]
    Target {
        /// The target as given.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The connection could not be made (nothing listening, a refused TLS
    /// handshake, the connect timeout).
    #[error("cannot connect to `{target}`")]
    Connect {
        /// The target as given.
        target: String,
        /// The transport's error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The server (or the transport under a call) answered with an error
    /// status.
    #[error("{0}")]
    Status(Box<RemoteStatus>),
    /// Arguments that cannot be sent (keyword names that are not strings).
    #[error(transparent)]
    Arguments(Box<Error>),
}

/// An error status, with what the server said in its `ErrorInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteStatus {
    /// The gRPC status code.
    pub code: Code,
    /// snakepit's label of the error (`python_exception`, `unknown_tool`,
    /// `timeout`, `unauthenticated`, ...: the labels of
    /// [`Error::outcome`]); `None` when the status carries no snakepit
    /// `ErrorInfo` (a transport failure, a proxy's answer).
    pub kind: Option<String>,
    /// The status message: the error as snakepit words it (`python raised
    /// ValueError: ...`), what `Display` shows.
    pub summary: String,
    /// The `ErrorInfo`'s message: Python's own text when Python raised, else
    /// the summary.
    pub message: String,
    /// The Python exception class, when Python raised.
    pub python_type: Option<String>,
    /// Python's traceback (its last 4 KiB), when Python raised.
    pub traceback: Option<String>,
    /// The argument at fault, when there is one.
    pub parameter: Option<String>,
}

impl fmt::Display for RemoteStatus {
    /// The summary, as the server's runtime words the error (the local
    /// `Error`'s `Display`); a status without snakepit's details says its
    /// code first.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = [&self.summary, &self.message]
            .into_iter()
            .find(|t| !t.is_empty());
        match (&self.kind, text) {
            (Some(_), Some(text)) => f.write_str(text),
            (None, Some(text)) => write!(f, "{}: {text}", self.code.description()),
            (_, None) => f.write_str(self.code.description()),
        }
    }
}

impl RemoteStatus {
    /// Reads a status: the snakepit `ErrorInfo` in its details when there is
    /// one, else only its code and message.
    pub fn from_status(status: &tonic::Status) -> Self {
        let info = status
            .get_error_details()
            .error_info()
            .filter(|info| info.domain == ERROR_DOMAIN)
            .cloned();
        let Some(info) = info else {
            return Self {
                code: status.code(),
                kind: None,
                summary: status.message().to_string(),
                message: status.message().to_string(),
                python_type: None,
                traceback: None,
                parameter: None,
            };
        };
        let mut meta: HashMap<String, String> = info.metadata;
        let mut take = |key: &str| meta.remove(key).filter(|v| !v.is_empty());
        let kind = take("kind").unwrap_or_else(|| info.reason.to_ascii_lowercase());
        Self {
            code: status.code(),
            summary: status.message().to_string(),
            message: take("message").unwrap_or_else(|| status.message().to_string()),
            python_type: take("python_type"),
            traceback: take("traceback"),
            parameter: take("parameter"),
            kind: Some(kind),
        }
    }
}

impl From<tonic::Status> for RemoteError {
    fn from(status: tonic::Status) -> Self {
        Self::Status(Box::new(RemoteStatus::from_status(&status)))
    }
}

impl From<Error> for RemoteError {
    fn from(err: Error) -> Self {
        Self::Arguments(Box::new(err))
    }
}

impl RemoteError {
    /// The error status, when the failure is one.
    pub fn status(&self) -> Option<&RemoteStatus> {
        match self {
            Self::Status(status) => Some(status),
            _ => None,
        }
    }

    /// The gRPC status code, when the failure is a status.
    pub fn code(&self) -> Option<Code> {
        self.status().map(|s| s.code)
    }

    /// snakepit's label of the error (see [`RemoteStatus::kind`]).
    pub fn kind(&self) -> Option<&str> {
        self.status().and_then(|s| s.kind.as_deref())
    }

    /// The Python exception class, when Python raised.
    pub fn python_type(&self) -> Option<&str> {
        self.status().and_then(|s| s.python_type.as_deref())
    }

    /// Python's traceback, when Python raised.
    pub fn traceback(&self) -> Option<&str> {
        self.status().and_then(|s| s.traceback.as_deref())
    }
}
