"""Telemetry from tools to the host: events, timed spans, correlation ids and trace context.

::

    from snakepit_bridge import telemetry

    with telemetry.span("prediction", {"input_size": 42}):
        result = model.predict(features)
    telemetry.emit("cache.lookup", {"hits": 3, "misses": 1}, {"cache": "lru"})
    telemetry.emit("tool.execution.stop", {"duration": 12}, {"tool": "predict"}, correlation_id="abc-123")

Backends
--------
Events go to the active backend (:func:`get_backend`). Inside a worker the
default is :class:`HostBackend`: each event is one ``TelemetryEvent`` frame to
the host (one socket write on the caller's thread, nothing waited for). Its
``Frame.id`` is the id of the request the calling code serves, or 0 outside a
request (start-up, release hooks, variable-watch callbacks, threads a tool
starts without copying its context). Events emitted while the worker starts
(in ``__init__`` or ``initialize()`` of a shared instance) are held until the
worker has sent its Hello. Outside a worker (a unit test, a script) the
default is :class:`LogBackend`, which only logs each event at debug level.
:func:`set_backend` installs any object with the :class:`TelemetryBackend`
``emit`` method instead (a recorder in tests, an exporter of your own);
``set_backend(None)`` goes back to the default.

Correlation ids
---------------
A request's correlation id arrives from the host in the request metadata
under :data:`CORRELATION_HEADER` (``x-snakepit-correlation-id``) and is the
current id (:func:`get_correlation_id`) of everything run for the request: the
tool, its spans and events, its log records (see
:mod:`snakepit_bridge.logging_config`), its stream generator, its coroutines,
and threads started with ``contextvars.copy_context()``. A request without
one has none, unless the code sets one with :func:`set_correlation_id`, which
holds for the calling context (thread, asyncio task) and the request it serves
only: an id set by one request never leaks into the next request run on the
same thread. :func:`outgoing_metadata` gives the headers that carry the
current id and trace context on to other services.

Event format
------------
* ``name``: the event's or span's name;
* ``measurements``: the numbers given (name -> float);
* ``metadata``: the metadata given (any value the bridge can encode; others
  are sent as their ``str()``), plus ``correlation_id`` (the ``correlation_id``
  argument, else the current id; absent when there is none) and, inside a
  request that carries one, the request's W3C ``traceparent`` and
  ``tracestate``, each unless the caller set that key. Spans add ``span_id``
  (16 hex digits, new for each span) and ``parent_span_id`` (the enclosing
  span of this code, else the span id of the request's ``traceparent``, absent
  when neither exists), so the host can nest Python spans under the request's
  span and under each other; a span left by an exception adds
  ``status="error"``, ``error_type`` and ``error_message``, otherwise
  ``status="ok"``;
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
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from ._codec import EncodingError, encode_into, safe_text
from ._context import current_request, telemetry_sink
from ._proto import snakepit_pb2 as pb

__all__ = [
    "CORRELATION_HEADER",
    "HostBackend",
    "LogBackend",
    "Span",
    "TelemetryBackend",
    "current_trace_context",
    "current_traceparent",
    "emit",
    "get_backend",
    "get_correlation_id",
    "is_enabled",
    "new_correlation_id",
    "outgoing_metadata",
    "reset_correlation_id",
    "set_backend",
    "set_correlation_id",
    "span",
]

logger = logging.getLogger(__name__)

#: The request-metadata key (and outgoing header) that carries a correlation id.
CORRELATION_HEADER = "x-snakepit-correlation-id"

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_TRACE_KEYS = ("traceparent", "tracestate")

# The span id of the innermost open span of the running code.
_current_span: contextvars.ContextVar[str | None] = contextvars.ContextVar("snakepit_current_span", default=None)

# What set_correlation_id set in this context: (the request scope it was set
# for, held weakly; None outside a request) and the id. It counts only while
# that same scope is current, so an id a tool set on an executor thread is not
# the id of the next request that thread runs.
_ScopeRef = Callable[[], object]
_own_correlation: contextvars.ContextVar[tuple[_ScopeRef | None, str | None] | None] = contextvars.ContextVar(
    "snakepit_correlation_id", default=None
)


# ------------------------------------------------------------ correlation ids


def new_correlation_id() -> str:
    """A new random correlation id (a UUID4 in its canonical text form)."""
    return str(uuid.uuid4())


def get_correlation_id() -> str | None:
    """The correlation id of the running code, or None.

    That is the id :func:`set_correlation_id` set in this context for the
    request the code serves, else the id the host sent with that request,
    else None (also outside a request when none was set).
    """
    scope = current_request.get()
    own = _own_correlation.get()
    if own is not None:
        ref = own[0]
        if (scope is None and ref is None) or (ref is not None and scope is not None and ref() is scope):
            return own[1]
    if scope is None:
        return None
    return scope.metadata.get(CORRELATION_HEADER) or None


def set_correlation_id(correlation_id: str | None) -> contextvars.Token[Any]:
    """Make ``correlation_id`` the current id of this context; returns a token for :func:`reset_correlation_id`.

    It holds for the calling thread or asyncio task (and for tasks and copied
    contexts started from it afterwards), for the request the code serves now.
    ``None`` (or ``""``) means "no id", even in a request the host gave one.
    """
    scope = current_request.get()
    ref: _ScopeRef | None = None
    if scope is not None:
        try:
            ref = weakref.ref(scope)
        except TypeError:
            ref = _strong(scope)
    cid = None if correlation_id is None else (str(correlation_id) or None)
    return _own_correlation.set((ref, cid))


def _strong(scope: object) -> _ScopeRef:
    return lambda: scope


def reset_correlation_id(token: contextvars.Token[Any] | None = None) -> None:
    """Undo :func:`set_correlation_id`.

    With the ``token`` it returned, the id current before that call is current
    again. Without one, every id set in this context is forgotten: the current
    id is the request's own id from the host again (None outside a request).
    """
    if token is None:
        _own_correlation.set(None)
    else:
        _own_correlation.reset(token)


def outgoing_metadata(metadata: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Headers for a call this code makes to another service.

    ``metadata`` (values as ``str``), plus the current correlation id under
    :data:`CORRELATION_HEADER`, the ``traceparent`` of the running code (its
    innermost span) and the request's ``tracestate``, each when there is one
    and ``metadata`` does not already set that key.
    """
    out = {str(k): str(v) for k, v in metadata.items()} if metadata else {}
    if CORRELATION_HEADER not in out:
        cid = get_correlation_id()
        if cid:
            out[CORRELATION_HEADER] = cid
    if "traceparent" not in out:
        traceparent = current_traceparent()
        if traceparent:
            out["traceparent"] = traceparent
    if "tracestate" not in out:
        scope = current_request.get()
        if scope is not None:
            tracestate = scope.metadata.get("tracestate")
            if tracestate:
                out["tracestate"] = tracestate
    return out


# ------------------------------------------------------------ trace context


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


# ----------------------------------------------------------------- backends


class TelemetryBackend(Protocol):
    """Where events go: any object with this ``emit`` method (see :func:`set_backend`)."""

    def emit(
        self,
        event: str,
        measurements: dict[str, float],
        metadata: dict[str, Any],
        correlation_id: str | None,
        duration_nanos: int,
    ) -> None:
        """Take one event: its name, measurements, metadata (``correlation_id``
        and the trace context already in it), correlation id (None for none)
        and duration (0 for a plain event, the span's length for a span).
        Called on the emitting thread, in its context."""
        ...


class HostBackend:
    """Sends each event to the host as a ``TelemetryEvent`` frame (the default inside a worker).

    The frame's id is the request the emitting code serves (0 for none).
    Outside a worker it drops events.
    """

    def emit(
        self,
        event: str,
        measurements: dict[str, float],
        metadata: dict[str, Any],
        correlation_id: str | None,
        duration_nanos: int,
    ) -> None:
        sink = telemetry_sink()
        if sink is None:
            return
        try:
            ev = pb.TelemetryEvent(name=event, measurements=measurements, duration_nanos=duration_nanos)
        except UnicodeEncodeError:
            # Names and keys are diagnostic text: a lone surrogate becomes its
            # backslash escape rather than costing the event (or the tool) anything.
            ev = pb.TelemetryEvent(
                name=safe_text(event),
                measurements={safe_text(k): v for k, v in measurements.items()},
                duration_nanos=duration_nanos,
            )
        for k, v in metadata.items():
            key = safe_text(str(k))
            try:
                encode_into(v, ev.metadata[key], root=f"telemetry metadata[{key!r}]")
            except EncodingError:
                ev.metadata[key].Clear()
                ev.metadata[key].str = safe_text(str(v))
        scope = current_request.get()
        sink(scope.id if scope is not None else 0, ev)


class LogBackend:
    """Logs each event at debug level and sends it nowhere (the default outside a worker)."""

    def emit(
        self,
        event: str,
        measurements: dict[str, float],
        metadata: dict[str, Any],
        correlation_id: str | None,
        duration_nanos: int,
    ) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("telemetry %s %s %s (no telemetry backend: dropped)", event, measurements, metadata)


_HOST = HostBackend()
_LOG = LogBackend()
_backend: TelemetryBackend | None = None


def set_backend(backend: TelemetryBackend | None) -> None:
    """Send every event of this process to ``backend`` from now on; None restores the default."""
    global _backend
    _backend = backend


def get_backend() -> TelemetryBackend:
    """The backend events go to now: the one :func:`set_backend` installed,
    else a :class:`HostBackend` inside a worker, else a :class:`LogBackend`."""
    backend = _backend
    if backend is not None:
        return backend
    return _HOST if telemetry_sink() is not None else _LOG


def is_enabled() -> bool:
    """Whether events reach anything but the debug log.

    True inside a worker (events go to the host) and whenever a backend other
    than a :class:`LogBackend` is installed; False otherwise, e.g. in a script
    or unit test with no backend set. Code may skip preparing costly metadata
    when it is False.
    """
    return type(get_backend()) is not LogBackend


# ------------------------------------------------------------------- events


def _measurements(values: Mapping[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    if not values:
        return out
    for k, v in values.items():
        if not isinstance(v, numbers.Real):
            raise TypeError(f"telemetry measurement {k!r} must be a number, got {type(v).__name__}")
        out[str(k)] = float(v)
    return out


def _send(
    name: str,
    measurements: dict[str, float],
    metadata: Mapping[str, Any] | None,
    duration_ns: int,
    correlation_id: str | None,
) -> None:
    md: dict[str, Any] = dict(metadata) if metadata else {}
    if correlation_id is None:
        correlation_id = get_correlation_id()
    else:
        correlation_id = str(correlation_id)
    if correlation_id:
        md["correlation_id"] = correlation_id
    scope = current_request.get()
    if scope is not None:
        request_md = scope.metadata
        for key in _TRACE_KEYS:
            if key not in md:
                value = request_md.get(key)
                if value:
                    md[key] = value
    get_backend().emit(name, measurements, md, correlation_id or None, duration_ns)


def emit(
    event: str,
    measurements: Mapping[str, Any],
    metadata: Mapping[str, Any] | None = None,
    correlation_id: str | None = None,
) -> None:
    """Send telemetry event ``event`` with these ``measurements`` (name -> number) and ``metadata``.

    ``correlation_id`` is the event's correlation id (default: the current
    one, see :func:`get_correlation_id`). Measurements must be real numbers
    (``bool`` counts as 0 or 1); anything else raises ``TypeError``, also
    outside a worker. See the module documentation for what reaches the host.
    """
    values = _measurements(measurements)
    _send(str(event), values, metadata, 0, correlation_id)


class Span:
    """An open span, as ``with telemetry.span(...) as s`` binds it.

    ``s.metadata`` and ``s.measurements`` may be added to inside the block;
    they are sent when it ends. ``s.span_id`` is this span's id,
    ``s.correlation_id`` the correlation id its event carries (None for none).
    """

    __slots__ = ("name", "metadata", "measurements", "span_id", "parent_span_id", "correlation_id")

    def __init__(
        self,
        name: str,
        metadata: dict[str, Any],
        span_id: str,
        parent_span_id: str | None,
        correlation_id: str | None = None,
    ) -> None:
        self.name = name
        self.metadata = metadata
        self.measurements: dict[str, float] = {}
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.correlation_id = correlation_id

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


@contextmanager
def span(
    operation: str,
    metadata: Mapping[str, Any] | None = None,
    correlation_id: str | None = None,
) -> Iterator[Span]:
    """Time the ``with`` block and send it as one telemetry event named ``operation``.

    The event carries ``duration_nanos``, the ``metadata`` given plus the
    correlation id, the request's trace context and this span's
    ``span_id``/``parent_span_id``, and ``status`` (``"ok"``, or ``"error"``
    with ``error_type`` and ``error_message`` when the block raised; the
    exception propagates). Spans nest: code inside the block, and asyncio
    tasks it starts, see this span as their parent. A ``correlation_id`` given
    is the current id inside the block (its logs and events carry it);
    without one the span carries the id current when it opens. The event is
    sent when the block ends.
    """
    span_id = os.urandom(8).hex()
    cid_token: contextvars.Token[Any] | None = None
    if correlation_id is not None:
        cid: str | None = str(correlation_id) or None
        cid_token = set_correlation_id(cid)
    else:
        cid = get_correlation_id()
    s = Span(str(operation), dict(metadata) if metadata else {}, span_id, _parent_span_id(), cid)
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
        if cid_token is not None:
            _own_correlation.reset(cid_token)
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
            _send(s.name, dict(s.measurements), md, max(1, duration), s.correlation_id or "")
        except Exception:  # a span must never replace the block's own outcome
            logger.exception("telemetry: could not send span %r", s.name)
