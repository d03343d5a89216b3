"""Adapters for tests/test_threaded.py: the thread profile, telemetry and the thread-safety checker."""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np
import numpy.typing as npt

from snakepit_bridge import BaseAdapter, StreamChunk, otel_tracing, telemetry
from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method, tool

if TYPE_CHECKING:  # never imported at run time: the annotations below stay unresolvable text
    from decimal import Decimal

# Rendezvous points shared by concurrent requests, by name (module level:
# the tests use them to make requests overlap for certain). In-process tests
# clear them, so that a barrier one of them broke is not reused.
_barriers: dict[str, threading.Barrier] = {}
_barriers_lock = threading.Lock()


def _barrier(name: str, parties: int) -> threading.Barrier:
    with _barriers_lock:
        b = _barriers.get(name)
        if b is None or b.parties != parties:
            b = _barriers[name] = threading.Barrier(parties, timeout=5)
        return b


class LifecycleAdapter(ThreadSafeAdapter):
    """Records its lifecycle; emits telemetry from __init__, initialize() and cleanup()."""

    __thread_safe__ = True
    instances = 0

    def __init__(self) -> None:
        super().__init__()
        with self.acquire_lock():
            type(self).instances += 1
            self.instance_no = type(self).instances
        self.initialized = 0
        self.requests = 0
        self.released: list[str] = []
        telemetry.emit("test.init", {"instance": self.instance_no})

    def initialize(self) -> None:
        with self.acquire_lock():
            self.initialized += 1
        telemetry.emit("test.initialize", {"instance": self.instance_no, "initialized": self.initialized})

    def cleanup(self) -> None:
        telemetry.emit("test.cleanup", {"instance": self.instance_no, "requests": self.requests})

    def on_session_release(self, session_id: str) -> None:
        with self.acquire_lock():
            self.released.append(session_id)

    @thread_safe_method
    @tool
    def state(self) -> Dict[str, Any]:
        """Count this request; report the instance and what it saw."""
        with self.acquire_lock():
            self.requests += 1
            return {
                "instance": self.instance_no,
                "initialized": self.initialized,
                "requests": self.requests,
                "released": list(self.released),
                "instances": type(self).instances,
            }

    @tool
    @thread_safe_method
    def session_twice(self, parties: int = 2) -> List[str]:
        """Read the session id, meet the other requests, read it again."""
        first = self.session_context.session_id
        _barrier("session_twice", parties).wait()
        second = self.session_context.session_id
        return [first, second]

    @tool
    def stats(self) -> Dict[str, Any]:
        """get_stats_dict() of the shared instance."""
        return self.get_stats_dict()


class FailingInitAdapter(ThreadSafeAdapter):
    def initialize(self) -> None:
        raise RuntimeError("no model today")

    @tool
    def noop(self) -> None:
        return None


class ExplicitlyUnsafeAdapter(ThreadSafeAdapter):
    __thread_safe__ = False

    @tool
    def noop(self) -> None:
        return None


class BadCounterAdapter(ThreadSafeAdapter):
    """The guide's Pitfall 1 (an unlocked counter), with a rendezvous so two calls overlap for certain."""

    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.counter = 0
        self.db = sqlite3.connect(":memory:", check_same_thread=False)

    @thread_safe_method
    @tool
    def bump(self, parties: int = 2) -> int:
        """Meet the other calls, increment without the lock, meet them again."""
        _barrier("bump-in", parties).wait()
        self.counter += 1  # NOT ATOMIC (on purpose)
        _barrier("bump-out", parties).wait()
        return self.counter

    @thread_safe_method
    @tool
    def bump_locked(self, parties: int = 2) -> int:
        """The same, under acquire_lock()."""
        _barrier("bump-locked-in", parties).wait()
        with self.acquire_lock():
            self.counter += 1
            value = self.counter
        _barrier("bump-locked-out", parties).wait()
        return value


class TracedAdapter(ThreadSafeAdapter):
    """Tools that emit telemetry in every way a tool can."""

    @tool
    def traced(self, fail: bool = False) -> Dict[str, str]:
        """Nested spans and an event; returns the request's trace context."""
        with telemetry.span("outer", {"k": "v"}) as outer:
            outer.measure("items", 3)
            with telemetry.span("inner"):
                telemetry.emit("evt", {"x": 1.5, "flag": True}, {"tag": "t", "obj": object()})
            if fail:
                raise ValueError("span failed")
        return telemetry.current_trace_context()

    @tool
    def otel_traced(self) -> Dict[str, str]:
        """A span through the OpenTelemetry-style helpers; returns the
        context an outgoing call would carry from inside it."""
        tracer = otel_tracing.get_tracer("tests")
        with tracer.start_as_current_span("otel.work", attributes={"rows": 2, "model": "m"}) as span:
            span.set_attribute("ok", "yes")
            return dict(otel_tracing.inject())

    @tool
    async def traced_async(self) -> str:
        """An event from an asyncio task of an async tool."""

        async def child() -> None:
            await asyncio.sleep(0)
            telemetry.emit("async.evt", {"n": 1})

        await asyncio.get_running_loop().create_task(child())
        return "ok"

    @tool
    def from_threads(self) -> str:
        """Events from a thread given the request's context and from a bare thread."""
        ctx = contextvars.copy_context()
        t1 = threading.Thread(target=ctx.run, args=(telemetry.emit, "thread.copied", {"n": 1}))
        t2 = threading.Thread(target=telemetry.emit, args=("thread.bare", {"n": 2}))
        for t in (t1, t2):
            t.start()
            t.join()
        return "ok"

    @tool(supports_streaming=True)
    def traced_stream(self, n: int = 2):
        """An event per streamed item."""
        for i in range(n):
            telemetry.emit("stream.item", {"i": i})
            yield StreamChunk(i, is_final=(i == n - 1))

    @tool
    def sleep(self, ms: int) -> int:
        """Sleep ms milliseconds."""
        time.sleep(ms / 1000.0)
        return ms


class UndeclaredAdapter(BaseAdapter):
    """Declares nothing: for the checker's undeclared-adapter warning (in-process only)."""

    def work(self, parties: int) -> None:
        _barrier("undeclared", parties).wait()


class TypedAdapter(BaseAdapter):
    """Parameters annotated in the ways the reference's type table allows."""

    @tool
    def typed(
        self,
        ints: List[int],
        maybe_list: Optional[List[float]] = None,
        union_list: list[float] | None = None,
        mapping: Dict[str, Any] | None = None,
        arr: npt.NDArray[np.float64] | None = None,
        blob: bytes = b"",
        name: str = None,  # the reference's ML example writes `cache_key: str = None`
    ) -> Dict[str, str]:
        """Report the type each parameter arrived as."""
        return {k: type(v).__name__ for k, v in locals().items() if k != "self"}

    @tool
    def text_annotated(self, amount: "Decimal", count: "int", maybe: "Optional[int]" = None, xs: "List[int] | None" = None) -> str:
        """One unresolvable annotation must not lose the others."""
        return "ok"
