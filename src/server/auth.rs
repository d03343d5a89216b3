//! The gate in front of the API: a tower layer that sees every request
//! before its service does, and refuses
//!
//! - calls without the bearer token, when the server has one:
//!   `authorization: Bearer <token>`, compared in constant time (SHA-256
//!   digests of both, so that not even the length leaks); UNAUTHENTICATED
//!   with kind `unauthenticated`, logged and counted
//!   (`snakepit_grpc_unauthenticated_total`, event
//!   `snakepit.server.auth.rejected`);
//! - new calls once shutdown began: UNAVAILABLE, kind `shutting_down`.
//!
//! Health checks and reflection pass without a token (they reveal up or
//! down and the public schema) and during shutdown (health then answers
//! NOT_SERVING).
//!
//! The token comes from a file ([`Token::from_file`]): trimmed, not empty,
//! and a warning when group or others may read it.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{Either, Ready, ready};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_layer::Layer;
use tower_service::Service;

use super::ServeError;
use super::observe::method_label;
use super::status;
use crate::telemetry::{GrpcRequestFinished, GrpcUnauthenticated};
use snakepit_actors::ShutdownSignal;

use crate::{Error, Telemetry};

/// Services that answer without a token and during shutdown.
const OPEN_SERVICES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The bearer token calls must carry. Only its digest is kept.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from its text (surrounding whitespace is not part of it).
    pub fn new(secret: &str) -> Result<Self, ServeError> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(ServeError::EmptyToken);
        }
        Ok(Self {
            digest: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    /// The token in the file at `path`, trimmed. Warns when group or others
    /// may read the file.
    pub fn from_file(path: &Path) -> Result<Self, ServeError> {
        use std::os::unix::fs::PermissionsExt;
        let unreadable = |e: std::io::Error| ServeError::TokenFile {
            path: path.to_path_buf(),
            source: e,
        };
        let text = std::fs::read_to_string(path).map_err(unreadable)?;
        let mode = std::fs::metadata(path)
            .map_err(unreadable)?
            .permissions()
            .mode();
        if mode & 0o044 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:04o}", mode & 0o7777),
                "The token file is readable by group or others; `chmod 600` it.");
        }
        Self::new(&text).map_err(|_| ServeError::EmptyTokenFile {
            path: path.to_path_buf(),
        })
    }

    fn admits(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.digest).into()
    }
}

/// The layer the server is built with.
#[derive(Clone)]
pub(crate) struct GateLayer {
    keeper: Arc<Keeper>,
}

struct Keeper {
    token: Option<Token>,
    /// Calls are refused once it fires (`None`: a server that lives until
    /// it is dropped).
    signal: Option<ShutdownSignal>,
    telemetry: Telemetry,
}

impl GateLayer {
    pub(crate) fn new(
        token: Option<Token>,
        signal: Option<ShutdownSignal>,
        telemetry: Telemetry,
    ) -> Self {
        Self {
            keeper: Arc::new(Keeper {
                token,
                signal,
                telemetry,
            }),
        }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            keeper: self.keeper.clone(),
        }
    }
}

/// The gate around the server's routes.
#[derive(Clone)]
pub(crate) struct Gate<S> {
    inner: S,
    keeper: Arc<Keeper>,
}

impl<S, B> Service<http::Request<B>> for Gate<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<http::Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.keeper.refusal(&request) {
            None => Either::Right(self.inner.call(request)),
            Some(status) => Either::Left(ready(Ok(status.into_http()))),
        }
    }
}

impl Keeper {
    /// Why `request` may not pass, as the status to answer with. A call
    /// that passes costs no look at its path.
    fn refusal<B>(&self, request: &http::Request<B>) -> Option<tonic::Status> {
        let refused = self.unauthenticated(request);
        let stopping = self
            .signal
            .as_ref()
            .is_some_and(ShutdownSignal::is_requested);
        if refused.is_none() && !stopping {
            return None;
        }
        let path = request.uri().path();
        if OPEN_SERVICES.iter().any(|open| path.starts_with(open)) {
            return None;
        }
        let method = method_label(path);
        let status = match refused {
            Some(refused) => {
                GrpcUnauthenticated {
                    method,
                    reason: refused.reason(),
                    peer: peer(request),
                }
                .emit(&self.telemetry);
                status::unauthenticated(refused.message())
            }
            None => status::status(&Error::ShuttingDown),
        };
        GrpcRequestFinished {
            method,
            code: status::code_label(status.code()),
            duration: Duration::ZERO,
        }
        .emit(&self.telemetry);
        Some(status)
    }

    /// Why the request lacks the token, when it does.
    fn unauthenticated<B>(&self, request: &http::Request<B>) -> Option<NoToken> {
        let token = self.token.as_ref()?;
        let Some(header) = request.headers().get(http::header::AUTHORIZATION) else {
            return Some(NoToken::Missing);
        };
        let presented = header.to_str().ok().and_then(|value| {
            let (scheme, rest) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
        match presented {
            Some(presented) if token.admits(presented) => None,
            _ => Some(NoToken::Invalid),
        }
    }
}

/// Why a call is refused as UNAUTHENTICATED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoToken {
    /// No `authorization` header.
    Missing,
    /// A header that is not `Bearer` and the token.
    Invalid,
}

impl NoToken {
    /// The event's `reason` label.
    fn reason(self) -> &'static str {
        match self {
            NoToken::Missing => "missing",
            NoToken::Invalid => "invalid",
        }
    }

    /// The status message.
    fn message(self) -> &'static str {
        match self {
            NoToken::Missing => "this server needs `authorization: Bearer <token>`",
            NoToken::Invalid => "the bearer token is not valid",
        }
    }
}

/// The client's address, for the log.
fn peer<B>(request: &http::Request<B>) -> Option<String> {
    let extensions = request.extensions();
    let tcp = extensions.get::<TcpConnectInfo>().or_else(|| {
        extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .map(|tls| tls.get_ref())
    });
    tcp.and_then(TcpConnectInfo::remote_addr)
        .map(|addr| addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_trimmed_compared_whole_and_never_shown() {
        let token = Token::new("  s3cret\n").unwrap();
        assert!(token.admits("s3cret"));
        for wrong in ["s3cre", "s3crett", "", "S3CRET"] {
            assert!(!token.admits(wrong), "{wrong:?}");
        }
        assert!(!format!("{token:?}").contains("s3cret"));
        assert!(matches!(Token::new(" \n"), Err(ServeError::EmptyToken)));
    }

    #[test]
    fn a_token_file_must_hold_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            Token::from_file(&path),
            Err(ServeError::EmptyTokenFile { .. })
        ));
        std::fs::write(&path, "abc\n").unwrap();
        assert!(Token::from_file(&path).unwrap().admits("abc"));
        assert!(matches!(
            Token::from_file(&dir.path().join("absent")),
            Err(ServeError::TokenFile { .. })
        ));
    }
}
