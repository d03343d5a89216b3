//! The W3C trace context a call carries to Python. The runtime does not
//! export traces itself: whoever installs an exporter (the `snakepit`
//! crate's `otel` module) says where the current context comes from, and a
//! call submitted inside a span carries that span's `traceparent` to the
//! worker, whose spans then nest under it.

use std::sync::OnceLock;

/// The request-metadata key (and gRPC header) of a call's correlation id:
/// one id for everything a call causes, host-side events and logs, and the
/// worker's spans, events and log records. A call without one gets a fresh
/// id when it is submitted.
pub const CORRELATION_HEADER: &str = "x-snakepit-correlation-id";

/// A fresh correlation id: a random UUID (version 4), as Python's
/// `telemetry.new_correlation_id()` makes them.
pub fn new_correlation_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h =
        |r: std::ops::Range<usize>| -> String { b[r].iter().map(|x| format!("{x:02x}")).collect() };
    format!(
        "{}-{}-{}-{}-{}",
        h(0..4),
        h(4..6),
        h(6..8),
        h(8..10),
        h(10..16)
    )
}

/// A W3C trace context, as metadata carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// `00-{trace id}-{span id}-{flags}`.
    pub traceparent: String,
    /// Vendor state, when there is some.
    pub tracestate: Option<String>,
}

type Source = fn() -> Option<TraceContext>;

static SOURCE: OnceLock<Source> = OnceLock::new();

/// Where the current trace context comes from (once per process; later
/// calls are ignored).
pub fn set_trace_context_source(source: Source) {
    let _ = SOURCE.set(source);
}

/// The current trace context, when a source is set and a span is current.
pub(crate) fn current() -> Option<TraceContext> {
    SOURCE.get().and_then(|source| source())
}

type ParentSetter = fn(&tracing::Span, &str);

static PARENT: OnceLock<ParentSetter> = OnceLock::new();

/// How a span is made the child of a W3C `traceparent` that came from a
/// worker (once per process; later calls are ignored).
pub fn set_remote_parent_setter(setter: ParentSetter) {
    let _ = PARENT.set(setter);
}

/// Makes `span` the child of `traceparent`, when a setter is set.
pub(crate) fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
    if let Some(setter) = PARENT.get() {
        setter(span, traceparent);
    }
}

/// A part of a call that already happened, to be recorded as a child span
/// of the call's: its queue wait, its decoding, run and encoding in the
/// worker (timed there).
#[derive(Debug, Clone, Copy)]
pub struct Phase<'a> {
    /// The span's name, e.g. `snakepit.queue`.
    pub name: &'static str,
    /// When it began.
    pub start: std::time::SystemTime,
    /// When it ended.
    pub end: std::time::SystemTime,
    /// Its attributes.
    pub attributes: &'a [(&'static str, &'a str)],
}

type PhaseRecorder = fn(&tracing::Span, Phase<'_>);

static PHASES: OnceLock<PhaseRecorder> = OnceLock::new();

/// How phases are recorded (once per process; later calls are ignored).
pub fn set_phase_recorder(recorder: PhaseRecorder) {
    let _ = PHASES.set(recorder);
}

/// Records `phase` under `span`, when a recorder is set and the span is
/// enabled.
pub(crate) fn record_phase(span: &tracing::Span, phase: Phase<'_>) {
    if let Some(recorder) = PHASES.get()
        && !span.is_disabled()
    {
        recorder(span, phase);
    }
}

/// Whether phases are recorded at all (so that callers skip the work).
pub(crate) fn recording() -> bool {
    PHASES.get().is_some()
}
