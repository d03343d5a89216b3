"""Batched tools and warm-up hooks for test_batching.py.

Nothing here imports numpy at module level: the stacked tools import it when
they run, so the adapter also loads in a worker without numpy."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, ClassVar

from snakepit_bridge import BaseAdapter, Batch, BatchItemError, tool
from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter


class BatchAdapter(ThreadSafeAdapter):
    """Thread-safe, so that the thread profile runs it too."""

    __thread_safe__ = True

    #: What warmup() saw (set on the class: the process profile warms a throwaway instance).
    warmed: ClassVar[dict[str, Any]] = {}
    #: How many instances ran initialize() / cleanup() (the process profile makes one per request).
    lifecycle: ClassVar[list[str]] = []

    def initialize(self) -> None:
        BatchAdapter.lifecycle.append("initialize")

    def cleanup(self) -> None:
        BatchAdapter.lifecycle.append("cleanup")

    def warmup(self) -> None:
        ctx = self.session_context
        self.warmed_here = True
        BatchAdapter.warmed = {
            "pid": os.getpid(),
            "session_id": ctx.session_id if ctx is not None else None,
            "lifecycle": list(BatchAdapter.lifecycle),
        }

    @tool(batch=Batch(max_size=8, max_wait_ms=2.5))
    def square(self, items: list[dict[str, Any]]) -> list[Any]:
        """x ** 2 of each call; a call whose x is negative fails alone (BatchItemError),
        one whose x is 13 with a ValueError; for x "text" it returns a str that is not UTF-8 (no wire form),
        for x "object" an object without one (a marker, or an error in the `error` mode)."""
        out: list[Any] = []
        for it in items:
            x = it["x"]
            if x == "text":
                out.append("caf\udce9")
            elif x == "object":
                out.append(object())
            elif x == 13:
                out.append(ValueError("unlucky"))
            elif x < 0:
                out.append(BatchItemError(f"negative: {x}", details={"x": x}))
            else:
                out.append({"x": x**2})
        return out

    @tool(batch=Batch())
    def seen(self, items: list[dict[str, Any]]) -> tuple[Any, ...]:
        """What the tool got, and the session of the request it served (a tuple of results)."""
        sid = self.session_id
        return tuple({"items": len(items), "item": it, "session_id": sid} for it in items)

    @tool(batch=Batch())
    def explode(self, items: list[dict[str, Any]]) -> list[Any]:
        """Raises: the whole batch fails."""
        raise RuntimeError(f"exploded with {len(items)} calls")

    @tool(batch=Batch())
    def short(self, items: list[dict[str, Any]]) -> Any:
        """Returns one result too few (or, with `kind`, something that is not a list)."""
        if items and items[0].get("kind") == "int":
            return 7
        return [0] * (len(items) - 1)

    @tool(batch=Batch(max_wait_ms=0))
    async def slow_double(self, items: list[dict[str, Any]]) -> list[int]:
        """Async: 2 * n of each call, after an await."""
        await asyncio.sleep(0.01)
        return [2 * it["n"] for it in items]

    @tool(batch=Batch())
    async def nap(self, items: list[dict[str, Any]]) -> list[None]:
        """Sleeps for the longest `s` of the calls."""
        await asyncio.sleep(max(it["s"] for it in items))
        return [None] * len(items)

    @tool(batch=Batch())
    def warmed_state(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What warmup() recorded, and whether it ran on this instance, for each call."""
        this_instance = getattr(self, "warmed_here", False)
        return [{**BatchAdapter.warmed, "this_instance": this_instance} for _ in items]

    @tool(batch=Batch())
    def lifecycle_seen(self, items: list[dict[str, Any]]) -> list[list[str]]:
        """The initialize()/cleanup() calls so far in this process, for each call."""
        return [list(BatchAdapter.lifecycle) for _ in items]

    @tool(batch=Batch())
    def big(self, items: list[dict[str, Any]]) -> list[str]:
        """A string of n characters per call."""
        return ["y" * it["n"] for it in items]

    @tool(batch=Batch(stack=True))
    def stacked(self, args: dict[str, Any]) -> Any:
        """Describes the stacked arguments; `mode` (of the first call) picks the form of the result:
        "rows" an array split by rows, "dict" a dict of arrays and lists, "list" a list."""
        import numpy as np

        a = args["a"]
        mode = str(args["mode"][0]) if "mode" in args else "rows"
        n = a.shape[0]
        if mode == "rows":
            return a * 10
        if mode == "dict":
            return {"sum": a.reshape(n, -1).sum(axis=1), "index": list(range(n)), "shape": [list(a.shape)] * n}
        if mode == "wrong":
            return np.zeros((n + 1,))
        return [{"type": type(a).__name__, "shape": list(a.shape), "dtype": str(a.dtype)} for _ in range(n)]

    @tool
    def plain(self, x: int) -> int:
        """Not batched."""
        return x + 1


class SlowWarmup(BaseAdapter):
    """warmup() takes 0.3 s; an async one, as a class method."""

    __thread_safe__ = True
    done_at: ClassVar[float] = 0.0

    @classmethod
    async def warmup(cls) -> None:
        await asyncio.sleep(0.3)
        cls.done_at = time.time()

    @tool
    def warmed_at(self) -> float:
        """When warmup() ended."""
        return SlowWarmup.done_at


class FailingWarmup(BaseAdapter):
    """warmup() (async) raises."""

    __thread_safe__ = True

    async def warmup(self) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("the model did not load")

    @tool
    def noop(self) -> None:
        """Never served."""


class StaticWarmup(BaseAdapter):
    """warmup() is a static method."""

    calls: ClassVar[int] = 0

    @staticmethod
    def warmup() -> None:
        StaticWarmup.calls += 1

    @tool
    def warmup_calls(self) -> int:
        """How many times warmup() ran in this process."""
        return StaticWarmup.calls


class DynamicAdapter(BaseAdapter):
    """Serves tools through execute_tool (no plans): a batch is refused."""

    def execute_tool(self, tool_name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        return {"tool": tool_name, "arguments": arguments}
