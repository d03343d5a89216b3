"""Telemetry from tools to the host: events, timed spans and the request's trace context.

::

    from snakepit_bridge import telemetry

    with telemetry.span("prediction", {"input_size": 42}):
        result = model.predict(features)
    telemetry.emit("cache.lookup", {"hits": 3, "misses": 1}, {"cache": "lru"})

Inside a worker each call sends one ``TelemetryEvent`` frame to the host
(one socket write on the caller's thread, nothing waited for). Its
``Frame.id`` is the id of the request the calling code serves, or 0 outside
a request (start-up, release hooks, variable-watch callbacks, threads a tool
starts without copying its context). Events emitted while the worker starts
(in ``__init__`` or ``initialize()`` of a shared instance) are held until
the worker has sent its Hello. Outside a worker (a unit test, a script)
both functions do nothing but log at debug level.

Event format
------------
* ``name``: the event's or span's name;
* ``measurements``: the numbers given (name -> float);
* ``metadata``: the metadata given (any value the bridge can encode; others
  are sent as their ``str()``), plus, inside a request that carries one, the
  request's W3C ``traceparent`` and ``tracestate`` unless the caller set those
  keys. Spans add ``span_id`` (16 hex digits, new for each span) and
  ``parent_span_id`` (the enclosing span of this code, else the span id of the
  request's ``traceparent``, absent when neither exists), so the host can nest
  Python spans under the request's span and under each other; a span left by
  an exception adds ``status="error"``, ``error_type`` and ``error_message``,
  otherwise ``status="ok"``;
* ``duration_nanos``: for spans, how long the block took (monotonic clock,
  at least 1); 0 for plain events.
"""

from __future__ import annotations

import contextvars
import logging
import numbers
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ._codec import EncodingError, encode_into, safe_text
from ._context import current_request, telemetry_sink
from ._proto import snakepit_pb2 as pb

__all__ = ["Span", "current_trace_context", "current_traceparent", "emit", "span"]

logger = logging.getLogger(__name__)

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_TRACE_KEYS = ("traceparent", "tracestate")

# The span id of the innermost open span of the running code.
_current_span: contextvars.ContextVar[str | None] = contextvars.ContextVar("snakepit_current_span", default=None)


def current_trace_context() -> dict[str, str]:
    """The W3C trace context of the request the calling code serves.

    A dict with ``traceparent`` and, when the host sent one, ``tracestate``,
    exactly as they arrived in the request's metadata (for instance to pass
    on to an HTTP call). Empty outside a request, or when the request came
    without trace context.
    """
    scope = current_request.get()
    if scope is None:
        return {}
    md = scope.metadata
    out: dict[str, str] = {}
    for key in _TRACE_KEYS:
        value = md.get(key)
        if value:
            out[key] = value
    return out


def _measurements(values: Mapping[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    if not values:
        return out
    for k, v in values.items():
        if not isinstance(v, numbers.Real):
            raise TypeError(f"telemetry measurement {k!r} must be a number, got {type(v).__name__}")
        out[str(k)] = float(v)
    return out


def _send(name: str, measurements: dict[str, float], metadata: Mapping[str, Any] | None, duration_ns: int) -> None:
    sink = telemetry_sink()
    scope = current_request.get()
    if sink is None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("telemetry %s %s %s (not in a worker: dropped)", name, measurements, dict(metadata or {}))
        return
    try:
        ev = pb.TelemetryEvent(name=name, measurements=measurements, duration_nanos=duration_ns)
    except UnicodeEncodeError:
        # Names and keys are diagnostic text: a lone surrogate becomes its
        # backslash escape rather than costing the event (or the tool) anything.
        ev = pb.TelemetryEvent(
            name=safe_text(name),
            measurements={safe_text(k): v for k, v in measurements.items()},
            duration_nanos=duration_ns,
        )
    if metadata:
        for k, v in metadata.items():
            key = safe_text(str(k))
            try:
                encode_into(v, ev.metadata[key], root=f"telemetry metadata[{key!r}]")
            except EncodingError:
                ev.metadata[key].Clear()
                ev.metadata[key].str = safe_text(str(v))
    if scope is not None:
        md = scope.metadata
        for key in _TRACE_KEYS:
            if key not in ev.metadata:
                value = md.get(key)
                if value:
                    ev.metadata[key].str = value
    sink(scope.id if scope is not None else 0, ev)


def emit(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any] | None = None) -> None:
    """Send telemetry event ``event`` with these ``measurements`` (name -> number) and ``metadata``.

    Measurements must be real numbers (``bool`` counts as 0 or 1); anything
    else raises ``TypeError``, also outside a worker. See the module
    documentation for the frame that reaches the host.
    """
    values = _measurements(measurements)
    _send(str(event), values, metadata, 0)


class Span:
    """An open span, as ``with telemetry.span(...) as s`` binds it.

    ``s.metadata`` and ``s.measurements`` may be added to inside the block;
    they are sent when it ends. ``s.span_id`` is this span's id.
    """

    __slots__ = ("name", "metadata", "measurements", "span_id", "parent_span_id")

    def __init__(self, name: str, metadata: dict[str, Any], span_id: str, parent_span_id: str | None) -> None:
        self.name = name
        self.metadata = metadata
        self.measurements: dict[str, float] = {}
        self.span_id = span_id
        self.parent_span_id = parent_span_id

    def set(self, key: str, value: Any) -> None:
        """Add ``key`` to the span's metadata."""
        self.metadata[key] = value

    def measure(self, key: str, value: float) -> None:
        """Add measurement ``key`` to the span."""
        if not isinstance(value, numbers.Real):
            raise TypeError(f"telemetry measurement {key!r} must be a number, got {type(value).__name__}")
        self.measurements[key] = float(value)

    def __repr__(self) -> str:
        return f"Span({self.name!r}, span_id={self.span_id!r})"


def current_traceparent() -> str:
    """The W3C ``traceparent`` of the calling code: its request's trace and
    its innermost open span (else the request's own span); empty outside a
    request that carries trace context."""
    scope = current_request.get()
    if scope is None:
        return ""
    m = _TRACEPARENT.match(scope.metadata.get("traceparent", "") or "")
    if m is None:
        return ""
    span_id = _current_span.get() or m.group(2)
    return f"00-{m.group(1)}-{span_id}-01"


def _parent_span_id() -> str | None:
    parent = _current_span.get()
    if parent is not None:
        return parent
    scope = current_request.get()
    if scope is None:
        return None
    m = _TRACEPARENT.match(scope.metadata.get("traceparent", "") or "")
    return m.group(2) if m else None


@contextmanager
def span(name: str, metadata: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """Time the ``with`` block and send it as one telemetry event named ``name``.

    The event carries ``duration_nanos``, the ``metadata`` given plus the
    request's trace context and this span's ``span_id``/``parent_span_id``,
    and ``status`` (``"ok"``, or ``"error"`` with ``error_type`` and
    ``error_message`` when the block raised; the exception propagates).
    Spans nest: code inside the block, and asyncio tasks it starts, see this
    span as their parent. The event is sent when the block ends.
    """
    span_id = os.urandom(8).hex()
    s = Span(str(name), dict(metadata) if metadata else {}, span_id, _parent_span_id())
    token = _current_span.set(span_id)
    t0 = time.perf_counter_ns()
    status = "ok"
    error: BaseException | None = None
    try:
        yield s
    except BaseException as e:
        status = "error"
        error = e
        raise
    finally:
        duration = time.perf_counter_ns() - t0
        _current_span.reset(token)
        md = s.metadata
        md.setdefault("span_id", s.span_id)
        if s.parent_span_id is not None:
            md.setdefault("parent_span_id", s.parent_span_id)
        md["status"] = status
        if error is not None:
            md["error_type"] = type(error).__name__
            md["error_message"] = str(error)
        try:
            # At least 1: a span always has a duration, which tells it from an event.
            _send(s.name, dict(s.measurements), md, max(1, duration))
        except Exception:  # a span must never replace the block's own outcome
            logger.exception("telemetry: could not send span %r", s.name)
