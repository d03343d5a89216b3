"""One request in flight in the worker, and the scope of a release hook.

The reader (``_worker.py``) makes a ``Request`` of each Execute and keeps it in
the registry until its final reply is claimed; the runner (``_runner.py``)
runs it, the host-call client (``_host_calls.py``) makes calls on its behalf.
Both kinds of scope are what ``_context.current_request`` holds while code
runs for them.
"""

from __future__ import annotations

import asyncio
import threading
import types
import typing
from typing import Any

from ._proto import snakepit_pb2 as pb

__all__: list[str] = []


class _Cancelled(Exception):
    """The request was cancelled (or already answered) while it ran."""


# The class keeps its old name: a tool sees it (type(e).__name__) when a host
# call is cut short by the request's cancellation.
Cancelled = _Cancelled


class Request:
    __slots__ = (
        "id",
        "execute",
        "cancelled",
        "credits",
        "cond",
        "task",
        "loop",
        "slot",
        "host_waits",
        "deadline",
        "shared",
        "context",
        "timing",
        "__weakref__",
    )

    def __init__(self, fid: int, execute: pb.Execute) -> None:
        self.id = fid
        self.execute = execute
        self.cancelled = False
        self.credits = 0
        self.cond: threading.Condition | None = None
        self.task: asyncio.Task[Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # The request's capacity slot, under `work_lock`: True while it holds
        # one (from when it is queued until its run ends), False while it gave
        # it back to wait on the host, None once its run ended.
        self.slot: bool | None = True
        # perf_counter_ns() at the run's start, after binding, after the
        # tool: for a request that carries a traceparent (else None).
        self.timing: list[int] | None = None
        # Threads of this request waiting on the host (under `work_lock`).
        self.host_waits = 0
        # time.monotonic() when the caller stops waiting; 0.0 for no deadline.
        self.deadline = 0.0
        # As a _context.RequestScope: the shared adapter instance running the
        # request (None for a per-request instance) and the session context
        # its `session_context` attribute shows while it does.
        self.shared: Any = None
        self.context: Any = None

    @property
    def metadata(self) -> Any:
        """The request's metadata map (trace context and the like)."""
        return self.execute.metadata

    @property
    def session_id(self) -> str:
        """The request's session ("" for none): refs it makes and uses belong to it."""
        return self.execute.session_id


class HookScope:
    """The request scope of a release hook run on the shared instance (frame id 0)."""

    __slots__ = ("shared", "context", "__weakref__")

    id = 0
    metadata: typing.Mapping[str, str] = types.MappingProxyType({})

    def __init__(self, shared: Any, context: Any) -> None:
        self.shared = shared
        self.context = context

    @property
    def session_id(self) -> str:
        session_id: str = self.context.session_id
        return session_id
