//! The W3C trace context a call carries to Python. The runtime does not
//! export traces itself: whoever installs an exporter (the `snakepit`
//! crate's `otel` module) says where the current context comes from, and a
//! call submitted inside a span carries that span's `traceparent` to the
//! worker, whose spans then nest under it.

use std::sync::OnceLock;

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
