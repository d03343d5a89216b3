//! OpenTelemetry traces, exported over OTLP/gRPC when an endpoint is set
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, or [`OtelConfig::endpoint`]); nothing is
//! exported, and nothing is slowed, when none is.
//!
//! - The host's spans are `tracing` spans (`snakepit.call` per call, with
//!   its pool, tool, session, outcome; a stream's chunk count), turned into
//!   OpenTelemetry spans by `tracing-opentelemetry`. A call made inside the
//!   caller's own span is its child.
//! - The call's W3C `traceparent` goes to Python in the request's metadata
//!   (the runtime asks [`current_trace_context`]); Python's
//!   `telemetry.span()` spans come back as events carrying their span id,
//!   parent and duration, and are exported here as spans of the same trace,
//!   children of the call (or of each other).
//! - The OpenTelemetry environment applies: `OTEL_SERVICE_NAME` (default
//!   `snakepit`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` (and
//!   `_ARG`). Spans are batched and exported off the call path.

use std::time::SystemTime;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use snakepit_actors::telemetry::trace::{
    Phase, TraceContext, set_phase_recorder, set_remote_parent_setter, set_trace_context_source,
};
use snakepit_proto::Value;
use tonic::codegen::http;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{Error, Event};

/// The environment variable that turns export on.
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Where traces go.
#[derive(Debug, Clone, Default)]
pub struct OtelConfig {
    endpoint: Option<String>,
}

impl OtelConfig {
    /// From the environment: export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    pub fn from_env() -> Self {
        Self {
            endpoint: std::env::var(ENDPOINT_ENV).ok().filter(|e| !e.is_empty()),
        }
    }

    /// Export to this OTLP/gRPC endpoint (`http://HOST:4317`).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Whether anything is exported.
    pub fn enabled(&self) -> bool {
        self.endpoint.is_some()
    }
}

/// The exporter's life: dropping it (or [`Otel::shutdown`]) flushes the
/// spans still batched.
pub struct Otel {
    provider: SdkTracerProvider,
}

impl Otel {
    /// Builds the exporter and its provider (inside a tokio runtime), and
    /// makes the runtime put the current span's context on every call.
    /// `None` when no endpoint is configured.
    pub fn start(config: &OtelConfig) -> Result<Option<Self>, Error> {
        let Some(endpoint) = &config.endpoint else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| Error::Config(format!("OTLP exporter for {endpoint}: {e}")))?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var("OTEL_SERVICE_NAME").is_err() {
            resource = resource.with_service_name("snakepit");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        set_trace_context_source(current_trace_context);
        set_remote_parent_setter(set_parent_from);
        set_phase_recorder(record_phase);
        let _ = PROVIDER.set(provider.clone());
        Ok(Some(Self { provider }))
    }

    /// The `tracing` layer that turns the host's spans into exported ones.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("snakepit"))
    }

    /// Exports Python's spans among `events` (a runtime's telemetry) until
    /// the channel closes.
    pub fn export_python_spans(
        &self,
        events: tokio::sync::broadcast::Receiver<Event>,
    ) -> tokio::task::JoinHandle<()> {
        spawn_python_spans(&self.provider, events)
    }

    /// Flushes and stops the exporter.
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
    }
}

impl Drop for Otel {
    fn drop(&mut self) {
        let _ = self.provider.force_flush();
    }
}

/// The current `tracing` span's OpenTelemetry context as a W3C
/// `traceparent`, when it has one.
pub fn current_trace_context() -> Option<TraceContext> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    let state = sc.trace_state().header();
    Some(TraceContext {
        traceparent: format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        ),
        tracestate: (!state.is_empty()).then_some(state),
    })
}

/// One Python `telemetry.span()` as an exported span of its request's
/// trace, under its parent; plain events and spans without trace context
/// are left to the metrics.
fn python_span(tracer: &impl Tracer, event: &snakepit_actors::telemetry::PythonEvent) {
    let Some(duration) = event.duration else {
        return;
    };
    let text = |key: &str| {
        event.metadata.iter().find_map(|(k, v)| match v {
            Value::Str(s) if k == key => Some(s.clone()),
            _ => None,
        })
    };
    let Some(trace_id) = text("traceparent")
        .and_then(|tp| tp.split('-').nth(1).map(str::to_string))
        .and_then(|t| TraceId::from_hex(&t).ok())
    else {
        return;
    };
    let Some(span_id) = text("span_id").and_then(|s| SpanId::from_hex(&s).ok()) else {
        return;
    };
    let parent = text("parent_span_id").and_then(|s| SpanId::from_hex(&s).ok());
    let cx = match parent {
        Some(parent) => Context::new().with_remote_span_context(SpanContext::new(
            trace_id,
            parent,
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        )),
        None => Context::new(),
    };
    let end = SystemTime::now();
    let start = end.checked_sub(duration).unwrap_or(end);
    let mut attributes = vec![
        KeyValue::new("snakepit.pool", event.pool.clone()),
        KeyValue::new("snakepit.worker", event.worker.clone()),
    ];
    for (k, v) in &event.measurements {
        attributes.push(KeyValue::new(k.clone(), *v));
    }
    for (k, v) in &event.metadata {
        if matches!(
            k.as_str(),
            "traceparent" | "tracestate" | "span_id" | "parent_span_id"
        ) {
            continue;
        }
        let value = match v {
            Value::Str(s) => s.clone(),
            other => format!("{other:?}"),
        };
        attributes.push(KeyValue::new(k.clone(), value));
    }
    let mut builder = tracer
        .span_builder(event.name.clone())
        .with_kind(SpanKind::Internal)
        .with_start_time(start)
        .with_end_time(end)
        .with_attributes(attributes);
    builder.span_id = Some(span_id);
    builder.trace_id = Some(trace_id);
    let mut span = tracer.build_with_context(builder, &cx);
    opentelemetry::trace::Span::end_with_timestamp(&mut span, end);
}

/// The provider of the exporter started in this process, for runtimes
/// started after it: they export their Python spans through it.
static PROVIDER: std::sync::OnceLock<SdkTracerProvider> = std::sync::OnceLock::new();

/// Exports the Python spans of a runtime whose telemetry is `telemetry`,
/// when an exporter runs in this process.
pub(crate) fn follow(telemetry: &crate::Telemetry) {
    if let Some(provider) = PROVIDER.get() {
        spawn_python_spans(provider, telemetry.subscribe());
    }
}

fn spawn_python_spans(
    provider: &SdkTracerProvider,
    mut events: tokio::sync::broadcast::Receiver<Event>,
) -> tokio::task::JoinHandle<()> {
    let tracer = provider.tracer("snakepit.python");
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::PythonEvent(e)) => python_span(&tracer, &e),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

/// The span of one gRPC request to `snakepit serve`: `snakepit.grpc`, a
/// child of the caller's span when its `traceparent` header names one, so
/// that the calls it makes continue the caller's trace.
pub(crate) fn grpc_span(request: &http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!(
        target: "snakepit::grpc",
        "snakepit.grpc",
        otel.name = %request.uri().path(),
        otel.kind = "server",
        rpc.system = "grpc",
    );
    if PROVIDER.get().is_some() {
        let cx = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&Headers(request.headers()))
        });
        let _ = span.set_parent(cx);
    }
    span
}

/// A part of a call that already happened, as an exported child of the
/// call's span, with the times it really had.
fn record_phase(span: &tracing::Span, phase: Phase<'_>) {
    let Some(provider) = PROVIDER.get() else {
        return;
    };
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    let tracer = provider.tracer("snakepit");
    let attributes: Vec<KeyValue> = phase
        .attributes
        .iter()
        .map(|(k, v)| KeyValue::new(*k, v.to_string()))
        .collect();
    let builder = tracer
        .span_builder(phase.name)
        .with_kind(SpanKind::Internal)
        .with_start_time(phase.start)
        .with_end_time(phase.end)
        .with_attributes(attributes);
    let mut child = tracer.build_with_context(builder, &cx);
    opentelemetry::trace::Span::end_with_timestamp(&mut child, phase.end);
}

/// Makes `span` the child of a W3C `traceparent` that came from a worker.
fn set_parent_from(span: &tracing::Span, traceparent: &str) {
    let cx = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Traceparent(traceparent))
    });
    let _ = span.set_parent(cx);
}

/// A lone `traceparent` as OpenTelemetry reads a carrier.
struct Traceparent<'a>(&'a str);

impl opentelemetry::propagation::Extractor for Traceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// HTTP headers as OpenTelemetry reads a carrier.
struct Headers<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
