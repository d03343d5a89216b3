"""Which request the running code serves, and where telemetry goes.

The worker sets :data:`current_request` around everything it runs for a
request (``initialize()``, the tool, its coroutines and generator steps,
``cleanup()``), so that code deep inside a tool can find the request without
being handed it: :mod:`snakepit_bridge.telemetry` reads it for the frame id
and the trace context, and the ``session_context`` attribute of an adapter
instance shared by concurrent requests reads it for the context of the
request at hand.

It is a :class:`contextvars.ContextVar`, so asyncio tasks started by a tool
see it, and so do threads a tool starts with
``contextvars.copy_context().run(...)``; a bare ``threading.Thread`` started
by a tool does not (it sees no request).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

__all__ = ["RequestScope", "current_request", "set_telemetry_sink", "telemetry_sink"]


class RequestScope(Protocol):
    """What code running for a request may know about it."""

    @property
    def id(self) -> int:
        """The frame id of the request (0 for work that belongs to no request)."""
        ...

    @property
    def metadata(self) -> Mapping[str, str]:
        """The request's metadata, W3C ``traceparent``/``tracestate`` among it."""
        ...

    #: The adapter instance shared by concurrent requests, when the request runs on one.
    shared: Any
    #: The request's session context as the shared instance should see it.
    context: Any


current_request: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar(
    "snakepit_current_request", default=None
)

# Called with (frame id, TelemetryEvent) by telemetry.emit/span inside a worker.
_sink: Callable[[int, Any], None] | None = None
_sink_lock = threading.Lock()


def set_telemetry_sink(sink: Callable[[int, Any], None] | None) -> None:
    """Install (or remove, with None) the function that sends telemetry events to the host."""
    global _sink
    with _sink_lock:
        _sink = sink


def telemetry_sink() -> Callable[[int, Any], None] | None:
    """The installed telemetry sink, or None outside a worker."""
    return _sink
