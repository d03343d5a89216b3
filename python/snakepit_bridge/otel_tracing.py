"""OpenTelemetry-style tracing for tools, without the OpenTelemetry SDK.

::

    from snakepit_bridge import otel_tracing

    tracer = otel_tracing.get_tracer(__name__)

    @tool
    def predict(self, features):
        with tracer.start_as_current_span("predict", attributes={"rows": len(features)}) as span:
            span.set_attribute("model", "v3")
            return model.predict(features)

A span here is a :func:`snakepit_bridge.telemetry.span`: the host exports it
(when it exports traces) as a span of the request's trace, under the host's
span for the call, or under the enclosing span. Code that needs the W3C
context for an outgoing call (an HTTP request, a queue message) takes it from
:func:`inject`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from . import telemetry

__all__ = ["Tracer", "current_traceparent", "get_tracer", "inject"]


class _SpanHandle:
    """What ``start_as_current_span`` yields: attributes, events, status."""

    __slots__ = ("_span",)

    def __init__(self, span: telemetry.Span) -> None:
        self._span = span

    def set_attribute(self, key: str, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self._span.measure(key, value)
        else:
            self._span.metadata[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        telemetry.emit(name, {}, dict(attributes or {}))

    def is_recording(self) -> bool:
        return True


class Tracer:
    """Spans named under an instrumentation scope, as OpenTelemetry's
    ``Tracer`` starts them."""

    def __init__(self, name: str) -> None:
        self.name = name

    @contextmanager
    def start_as_current_span(
        self, name: str, attributes: Mapping[str, Any] | None = None, **_: Any
    ) -> Iterator[_SpanHandle]:
        metadata = {"otel.scope": self.name}
        with telemetry.span(name, metadata) as span:
            handle = _SpanHandle(span)
            if attributes:
                handle.set_attributes(attributes)
            yield handle


def get_tracer(name: str, *_: Any, **__: Any) -> Tracer:
    """A tracer whose spans nest under the request the calling code serves."""
    return Tracer(name)


def current_traceparent() -> str:
    """The W3C ``traceparent`` of the calling code ("" outside a traced request)."""
    return telemetry.current_traceparent()


def inject(carrier: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Puts the calling code's ``traceparent`` (and the request's
    ``tracestate``) into ``carrier`` (a new dict when none is given)."""
    out: MutableMapping[str, str] = {} if carrier is None else carrier
    traceparent = telemetry.current_traceparent()
    if traceparent:
        out["traceparent"] = traceparent
        state = telemetry.current_trace_context().get("tracestate")
        if state:
            out["tracestate"] = state
    return out
