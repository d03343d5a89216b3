//! The typed events of services the runtime supervises (`crate::service`),
//! and of the one the `snakepit` crate runs: the gRPC server of `snakepit
//! serve`. The server's events are emitted from that crate, so their `emit`
//! is public; their labels (method, code, reason) are bounded by the server.

use std::time::Duration;

use metrics::{counter, histogram};
use tracing::{debug, info, warn};

use super::{Event, Telemetry, metric};

/// A service of the runtime failed (its future returned an error or panicked).
#[derive(Debug, Clone)]
pub struct ServiceFailed {
    /// The service's name, as it was spawned.
    pub service: String,
    /// What went wrong.
    pub error: String,
}

impl ServiceFailed {
    pub(crate) fn emit(self, t: &Telemetry) {
        tracing::error!(service = %self.service, error = %self.error, "A service of the runtime failed.");
        counter!(metric::SERVICE_FAILURES_TOTAL, "service" => self.service.clone()).increment(1);
        t.publish(|| Event::ServiceFailed(self));
    }
}

/// The gRPC server is listening.
#[derive(Debug, Clone)]
pub struct ServerStarted {
    /// Where: `HOST:PORT` or `unix:PATH`.
    pub addr: String,
    /// Whether it speaks TLS.
    pub tls: bool,
    /// Whether clients must present certificates (mTLS).
    pub client_certs: bool,
    /// Whether calls need a bearer token.
    pub token: bool,
}

impl ServerStarted {
    /// Logs the event and hands it to subscribers.
    pub fn emit(self, t: &Telemetry) {
        info!(addr = %self.addr, tls = self.tls, client_certs = self.client_certs,
            token = self.token, "Serving the gRPC API.");
        t.publish(|| Event::ServerStarted(self));
    }
}

/// The gRPC server stopped listening and its calls are over.
#[derive(Debug, Clone)]
pub struct ServerStopped {
    /// Where it listened.
    pub addr: String,
    /// Whether every call in flight finished before the deadline.
    pub drained: bool,
}

impl ServerStopped {
    /// Logs the event and hands it to subscribers.
    pub fn emit(self, t: &Telemetry) {
        if self.drained {
            info!(addr = %self.addr, "The gRPC server stopped.");
        } else {
            warn!(addr = %self.addr,
                "The gRPC server stopped with calls still in flight at the shutdown deadline.");
        }
        t.publish(|| Event::ServerStopped(self));
    }
}

/// A gRPC call finished (whatever its status).
#[derive(Debug, Clone)]
pub struct GrpcRequestFinished {
    /// The RPC, e.g. `Execute` (`<other>` for paths the service lacks).
    pub method: &'static str,
    /// Its status code as gRPC names it, e.g. `OK`, `NOT_FOUND`.
    pub code: &'static str,
    /// From the request's arrival to its last message.
    pub duration: Duration,
}

impl GrpcRequestFinished {
    /// Counts the call and hands the event to subscribers.
    pub fn emit(self, t: &Telemetry) {
        debug!(
            method = self.method,
            code = self.code,
            duration_us = self.duration.as_micros() as u64,
            "gRPC call finished."
        );
        counter!(metric::GRPC_REQUESTS_TOTAL, "method" => self.method, "code" => self.code)
            .increment(1);
        histogram!(metric::GRPC_REQUEST_DURATION, "method" => self.method)
            .record(self.duration.as_secs_f64());
        t.publish_call(|| Event::GrpcRequestFinished(self));
    }
}

/// A gRPC call was refused for its missing or wrong bearer token.
#[derive(Debug, Clone)]
pub struct GrpcUnauthenticated {
    /// The RPC asked for (`<other>` for paths the service lacks).
    pub method: &'static str,
    /// `missing` (no `authorization: Bearer` header) or `invalid`.
    pub reason: &'static str,
    /// The client's address, when the transport knows it.
    pub peer: Option<String>,
}

impl GrpcUnauthenticated {
    /// Logs and counts the refusal and hands it to subscribers.
    pub fn emit(self, t: &Telemetry) {
        warn!(
            method = self.method,
            reason = self.reason,
            peer = self.peer.as_deref().unwrap_or("-"),
            "Refused a gRPC call without a valid token."
        );
        counter!(metric::GRPC_UNAUTHENTICATED_TOTAL, "reason" => self.reason).increment(1);
        t.publish_call(|| Event::GrpcUnauthenticated(self));
    }
}
