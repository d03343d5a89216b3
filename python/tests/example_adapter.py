"""A test adapter written the way the reference documentation writes adapters."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Dict, List, Optional

import numpy as np

from snakepit_bridge import StreamChunk
from snakepit_bridge.base_adapter import BaseAdapter, tool

# Module-level cache for expensive resources: survives across requests.
_model: Optional[Dict[str, Any]] = None
_events: List[List[Any]] = []
_instances = 0
_closed_streams: List[str] = []


def _load_model() -> Dict[str, Any]:
    return {"name": "tiny", "loads": 1}


class ExampleAdapter(BaseAdapter):
    def __init__(self) -> None:
        global _instances
        super().__init__()
        _instances += 1
        self.instance_no = _instances
        self.session_context = None
        self.model: Optional[Dict[str, Any]] = None
        self.calls_on_this_instance = 0

    def set_session_context(self, ctx: Any) -> None:
        self.session_context = ctx
        _events.append(["ctx", self.instance_no])

    def initialize(self) -> None:
        """Per-request initialization - load from cache."""
        global _model
        if _model is None:
            _model = _load_model()
        self.model = _model
        _events.append(["initialize", self.instance_no])

    def cleanup(self) -> None:
        """Per-request cleanup."""
        _events.append(["cleanup", self.instance_no])

    @tool(description="Echo input")
    def echo(self, message: str) -> str:
        self.calls_on_this_instance += 1
        return f"Echo: {message}"

    @tool(description="Add two numbers")
    def add(self, a: float, b: float) -> float:
        return a + b

    @tool
    def whoami(self) -> Dict[str, Any]:
        """Report this instance and what the session context holds."""
        self.calls_on_this_instance += 1
        ctx = self.session_context
        return {
            "instance": self.instance_no,
            "calls_on_this_instance": self.calls_on_this_instance,
            "model_loaded": self.model is not None,
            "session_id": ctx.session_id,
            "metadata": ctx.request_metadata,
        }

    @tool
    def explode(self) -> None:
        """Raise so that cleanup has to run on the error path."""
        raise RuntimeError("exploded")

    @tool
    def events(self, clear: bool = False) -> List[List[Any]]:
        """Return (and optionally clear) the lifecycle log."""
        out = [list(e) for e in _events]
        if clear:
            _events.clear()
        return out

    @tool(description="Stream progress", supports_streaming=True)
    def process_with_progress(self, items: int = 10):
        for i in range(items):
            yield {"data": {"item": i + 1}, "is_final": (i == items - 1)}

    @tool(supports_streaming=True)
    def chunks(self, count: int = 3):
        """Yield StreamChunk envelopes with metadata; the last one is final."""
        for i in range(count):
            yield StreamChunk({"index": i}, is_final=(i == count - 1), metadata={"i": i})

    @tool
    def endless(self, tag: str = "s"):
        """Yield integers forever; record when GeneratorExit reaches the generator."""
        i = 0
        try:
            while True:
                yield i
                i += 1
        except GeneratorExit:
            _closed_streams.append(tag)
            raise

    @tool
    async def async_endless(self, tag: str = "a"):
        """An async generator yielding forever."""
        i = 0
        try:
            while True:
                await asyncio.sleep(0)
                yield i
                i += 1
        finally:
            _closed_streams.append(tag)

    @tool
    def closed_streams(self) -> List[str]:
        """Tags of streams whose generator was closed."""
        return list(_closed_streams)

    @tool
    def busy_wait_cancel(self, seconds: float = 5.0) -> str:
        """Spin until the request is cancelled (or time runs out)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.session_context.cancelled:
                _closed_streams.append("busy-cancelled")
                return "cancelled"
            time.sleep(0.002)
        return "timeout"

    @tool
    def typed(
        self,
        s: str,
        i: int,
        f: float,
        b: bool,
        l: List[float],
        d: Dict[str, Any],
        raw: bytes,
        maybe: Optional[int] = None,
        anything=None,
    ) -> Dict[str, str]:
        """Accept one parameter of every checked type."""
        return {k: type(v).__name__ for k, v in locals().items() if k != "self"}

    @tool
    def takes_array(self, arr: np.ndarray) -> List[Any]:
        """Return dtype and shape of the array it got."""
        return [type(arr).__name__, str(arr.dtype), list(arr.shape)]

    @tool
    def many(self, *values: int, **options: Any) -> Dict[str, Any]:
        """Take variadic arguments."""
        return {"values": list(values), "options": options}

    @tool
    def big(self, n: int) -> bytes:
        """Return n bytes."""
        return b"x" * n

    @tool
    def unencodable(self) -> Dict[str, Any]:
        """Return something that has no wire form."""
        return {"a": [1, 2, object()]}


class AsyncLifecycleAdapter(BaseAdapter):
    async def initialize(self) -> None:
        await asyncio.sleep(0)
        _events.append(["async-initialize"])

    async def cleanup(self) -> None:
        await asyncio.sleep(0)
        _events.append(["async-cleanup"])

    @tool
    async def hello(self, name: str = "world") -> str:
        """Greet asynchronously."""
        await asyncio.sleep(0.001)
        return f"hello {name}"

    @tool
    def events(self) -> List[List[Any]]:
        """The lifecycle log."""
        return [list(e) for e in _events]


NOT_A_CLASS = 42
