//! Traces: with an OTLP endpoint set, a call exports its `snakepit.call`
//! span and the spans its Python tool opened, in one trace, Python's under
//! the call's. The receiver is an OTLP/gRPC trace service (the protocol's
//! own definition) in this test process.

mod common;
mod grpc;

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;
use snakepit::otel::{Otel, OtelConfig};
use snakepit::{Snakepit, Value};
use tokio::sync::mpsc;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

struct Receiver(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// An OTLP trace receiver on loopback: its address, and what it receives.
async fn receiver() -> (
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver(tx)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, rx)
}

/// The spans received until `enough` holds of them (or 10 s went by).
async fn spans_until(
    rx: &mut mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    enough: impl Fn(&[Span]) -> bool,
) -> Vec<Span> {
    let mut spans = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while !enough(&spans) {
        let Ok(Some(request)) = tokio::time::timeout_at(until, rx.recv()).await else {
            break;
        };
        for resource in request.resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snakepit_exec_exports_its_call_and_the_python_span_with_the_endpoint_set() {
    let (addr, mut rx) = receiver().await;
    let out = common::snakepit_command()
        .args([
            "exec",
            "traced",
            "--adapter",
            "traced.TracedAdapter",
            "--python-path",
        ])
        .arg(common::fixtures_dir())
        .args(["--args", r#"{"n": 4}"#])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))
        .env("OTEL_SERVICE_NAME", "exec-test")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "6");
    let spans = spans_until(&mut rx, |s| {
        s.iter().any(|s| s.name == "traced.work") && s.iter().any(|s| s.name == "snakepit.call")
    })
    .await;
    let call = spans
        .iter()
        .find(|s| s.name == "snakepit.call")
        .expect("the host's span");
    let python = spans
        .iter()
        .find(|s| s.name == "traced.work")
        .expect("Python's span");
    assert_eq!(python.trace_id, call.trace_id);
    assert_eq!(python.parent_span_id, call.span_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_and_the_python_span_it_opened_share_one_trace() {
    let (addr, mut rx) = receiver().await;
    let otel = Otel::start(&OtelConfig::default().endpoint(format!("http://{addr}")))
        .expect("the exporter starts")
        .expect("an endpoint was given");
    tracing_subscriber::registry()
        .with(
            otel.layer()
                .with_filter(Targets::new().with_target("snakepit", tracing::Level::INFO)),
        )
        .init();

    let sp = Snakepit::builder()
        .pool(common::fixture_pool("traced", "traced.TracedAdapter", 1))
        .serve(grpc::loopback())
        .start()
        .await
        .unwrap();
    let total = sp.execute("traced", json!({"n": 10})).await.unwrap();
    assert_eq!(total, Value::Int(45));
    // Python calls a host tool, which calls back into Python.
    sp.register_host_tool(snakepit::HostTool::new(
        "again",
        |ctx: snakepit::HostCallContext, _args: snakepit::HostArgs| async move {
            ctx.execute("traced", json!({"n": 2}))
                .await
                .map_err(|e| snakepit::HostToolError::failed(e.to_string()))
        },
    ))
    .unwrap();
    let nested = sp
        .execute("traced_host", json!({"name": "again", "kwargs": {}}))
        .await
        .unwrap();
    assert_eq!(nested, Value::Int(1));
    // A gRPC client's trace continues through `snakepit serve`.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let addr = sp.server_addr().cloned().unwrap();
    let mut api = grpc::api(grpc::channel(&addr).await);
    let mut request = tonic::Request::new(grpc::execute("traced", [("n", 3.into())]));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{client_trace}-{client_span}-01")
            .parse()
            .unwrap(),
    );
    api.execute(request).await.expect("a traced gRPC call");
    // The Python span arrives as an event just before the result.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sp.shutdown().await;
    tokio::task::spawn_blocking(move || otel.shutdown())
        .await
        .unwrap();

    let spans = spans_until(&mut rx, |s| {
        s.iter().filter(|s| s.name == "traced.work").count() >= 3
    })
    .await;
    let named = |name: &str| {
        spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!(
                "no `{name}` span among {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    };
    let call = named("snakepit.call");
    let python = named("traced.work");
    assert!(
        spans
            .iter()
            .any(|s| s.name == "snakepit.queue" && s.parent_span_id == call.span_id),
        "the call's queue wait is its child"
    );
    for phase in [
        "snakepit.worker.decode",
        "snakepit.worker.run",
        "snakepit.worker.encode",
    ] {
        assert!(
            spans
                .iter()
                .any(|s| s.name == phase && s.parent_span_id == call.span_id),
            "the worker's `{phase}` is the call's child"
        );
    }
    assert_eq!(python.trace_id, call.trace_id, "one trace");
    assert_eq!(
        python.parent_span_id, call.span_id,
        "Python's span is the call's child"
    );
    let attribute = |span: &Span, key: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.clone())
            .unwrap_or_else(|| panic!("no {key} on {}", span.name))
    };
    let _ = attribute(call, "pool");

    // Python -> host -> Python: each hop is the child of the one before.
    let outer = named("traced.outer");
    let child_of = |parent: &Span, name: &str| -> Span {
        spans
            .iter()
            .find(|s| s.name.starts_with(name) && s.parent_span_id == parent.span_id)
            .cloned()
            .unwrap_or_else(|| panic!("no `{name}` under `{}`", parent.name))
    };
    let host_call = child_of(outer, "snakepit.host_call");
    assert_eq!(host_call.trace_id, outer.trace_id);
    let back = child_of(&host_call, "snakepit.call");
    let inner = child_of(&back, "traced.work");
    assert_eq!(inner.trace_id, outer.trace_id, "one trace end to end");

    // Over gRPC: the server's span is the client's child, the call the
    // server span's, Python's the call's.
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let remote: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == client_trace)
        .collect();
    let server = remote
        .iter()
        .find(|s| hex(&s.parent_span_id) == client_span)
        .unwrap_or_else(|| panic!("no span under the client's among {remote:?}"));
    let remote_call = remote
        .iter()
        .find(|s| s.name == "snakepit.call" && s.parent_span_id == server.span_id)
        .expect("the call under the server's span");
    assert!(
        remote
            .iter()
            .any(|s| s.name == "traced.work" && s.parent_span_id == remote_call.span_id),
        "Python's span under the gRPC call's"
    );
    let _ = attribute(call, "outcome");
    let _ = attribute(python, "items");
}
