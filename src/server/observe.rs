//! Every RPC measured the same way: its handler's work runs inside
//! [`Observer::unary`] or [`Observer::stream`], which turn an
//! [`Error`](crate::Error) into its status (`status.rs`) and emit the typed
//! event `GrpcRequestFinished` (`snakepit_grpc_requests_total{method,code}`,
//! `snakepit_grpc_request_duration_seconds{method}`) when the call is over:
//! a unary call when it answers, a stream when it ends, fails, or the client
//! drops it (`CANCELLED`).
//!
//! The observer also counts the calls in flight ([`InFlight`]): at
//! shutdown the server waits for them to be over before it closes its
//! connections.
//!
//! Method labels are the RPC names of `service.proto` (a bounded set);
//! the gate (`auth.rs`) labels the calls it refuses the same way.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::Stream;
use tokio::sync::watch;
use tonic::{Code, Response, Status};

use super::status;
use crate::telemetry::GrpcRequestFinished;
use crate::{Error, Telemetry};

/// The path prefix of the API's RPCs.
const SERVICE_PATH: &str = "/snakepit.v1.Snakepit/";

/// The RPCs of `service.proto`.
const METHODS: [&str; 20] = [
    "Execute",
    "ExecuteStream",
    "CreateSession",
    "GetSession",
    "ReleaseSession",
    "FfiCall",
    "FfiGet",
    "FfiCallClass",
    "FfiMethod",
    "FfiAttr",
    "FfiSetAttr",
    "FfiStream",
    "FfiNext",
    "FfiReleaseRef",
    "RegisterVariable",
    "GetVariable",
    "SetVariable",
    "ListVariables",
    "WatchVariables",
    "PoolStatus",
];

/// The label of the RPC at `path`: its name, or `<other>`.
pub(crate) fn method_label(path: &str) -> &'static str {
    if path == ATTACH_PATH {
        return "Attach";
    }
    path.strip_prefix(SERVICE_PATH)
        .and_then(|name| METHODS.iter().find(|m| **m == name))
        .copied()
        .unwrap_or("<other>")
}

/// The node agents' one RPC (`snakepit.v1.Agents`).
const ATTACH_PATH: &str = "/snakepit.v1.Agents/Attach";

/// A response stream.
pub(crate) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// How many calls are in flight; cheap to clone.
#[derive(Clone)]
pub(crate) struct InFlight {
    count: Arc<watch::Sender<usize>>,
}

impl InFlight {
    pub(crate) fn new() -> Self {
        Self {
            count: Arc::new(watch::channel(0).0),
        }
    }

    /// One more call, until the guard is dropped.
    fn enter(&self) -> CallGuard {
        self.count.send_modify(|n| *n += 1);
        CallGuard {
            count: self.count.clone(),
        }
    }

    /// Resolves once no call is in flight.
    pub(crate) async fn idle(&self) {
        let mut rx = self.count.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// A call in flight.
struct CallGuard {
    count: Arc<watch::Sender<usize>>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.count.send_modify(|n| *n -= 1);
    }
}

/// Measures calls.
#[derive(Clone)]
pub(crate) struct Observer {
    telemetry: Telemetry,
    in_flight: InFlight,
}

impl Observer {
    pub(crate) fn new(telemetry: Telemetry, in_flight: InFlight) -> Self {
        Self {
            telemetry,
            in_flight,
        }
    }

    /// Runs a unary call's `work`.
    pub(crate) async fn unary<T>(
        &self,
        method: &'static str,
        work: impl Future<Output = Result<T, Error>>,
    ) -> Result<Response<T>, Status> {
        let _in_flight = self.in_flight.enter();
        let started = Instant::now();
        let result = work.await.map_err(|err| status::status(&err));
        let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
        finished(&self.telemetry, method, code, started);
        result.map(Response::new)
    }

    /// Runs the `work` that opens a stream; the call is over when the
    /// stream is.
    pub(crate) async fn stream<T: 'static>(
        &self,
        method: &'static str,
        work: impl Future<Output = Result<BoxStream<T>, Error>>,
    ) -> Result<Response<BoxStream<T>>, Status> {
        let in_flight = self.in_flight.enter();
        let started = Instant::now();
        match work.await {
            Ok(inner) => Ok(Response::new(Box::pin(Observed {
                inner,
                method,
                started,
                telemetry: self.telemetry.clone(),
                in_flight: Some(in_flight),
            }))),
            Err(err) => {
                let status = status::status(&err);
                finished(&self.telemetry, method, status.code(), started);
                Err(status)
            }
        }
    }
}

fn finished(telemetry: &Telemetry, method: &'static str, code: Code, started: Instant) {
    GrpcRequestFinished {
        method,
        code: status::code_label(code),
        duration: started.elapsed(),
    }
    .emit(telemetry);
}

/// A response stream that reports its call when it is over.
struct Observed<T> {
    inner: BoxStream<T>,
    method: &'static str,
    started: Instant,
    telemetry: Telemetry,
    /// Until the call is over.
    in_flight: Option<CallGuard>,
}

impl<T> Observed<T> {
    fn finish(&mut self, code: Code) {
        if self.in_flight.take().is_some() {
            finished(&self.telemetry, self.method, code, self.started);
        }
    }
}

impl<T> Stream for Observed<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.inner.as_mut().poll_next(cx);
        match &item {
            Poll::Ready(Some(Err(status))) => self.finish(status.code()),
            Poll::Ready(None) => self.finish(Code::Ok),
            _ => {}
        }
        item
    }
}

impl<T> Drop for Observed<T> {
    fn drop(&mut self) {
        // Dropped before its end: the client went away.
        self.finish(Code::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_in_flight_are_counted_until_their_guards_go() {
        let in_flight = InFlight::new();
        in_flight.idle().await;
        let (a, b) = (in_flight.enter(), in_flight.enter());
        let waiting = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.idle().await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(b);
        waiting.await.unwrap();
    }

    #[test]
    fn the_method_labels_are_the_rpcs_of_service_proto() {
        let rpcs: Vec<&str> = snakepit_proto::SERVICE_PROTO_SOURCE
            .lines()
            .filter_map(|line| line.trim().strip_prefix("rpc "))
            .filter_map(|rest| rest.split('(').next())
            .map(str::trim)
            .collect();
        assert_eq!(rpcs, METHODS);
    }

    #[test]
    fn methods_are_labelled_by_name_and_strangers_as_other() {
        assert_eq!(method_label("/snakepit.v1.Snakepit/Execute"), "Execute");
        assert_eq!(
            method_label("/snakepit.v1.Snakepit/WatchVariables"),
            "WatchVariables"
        );
        assert_eq!(method_label("/snakepit.v1.Snakepit/Nope"), "<other>");
        assert_eq!(method_label("/other.Service/Execute"), "<other>");
    }
}
