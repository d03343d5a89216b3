"""A demonstration adapter: every kind of tool the bridge supports.

Run it with ``python -m snakepit_bridge.worker --adapter snakepit_bridge.showcase.ShowcaseAdapter``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

from .base_adapter import BaseAdapter, tool

__all__ = ["ShowcaseAdapter"]

# Per-session tallies, kept in the worker process between calls.
_tallies: dict[str, int] = {}
_tallies_lock = threading.Lock()


class ShowcaseAdapter(BaseAdapter):
    """Tools that show how values, errors, streams and cancellation cross the bridge.

    Thread-safe, so the thread profile runs it too: the tools keep no state on
    the instance, and the one shared table (the tallies) is locked.
    """

    __thread_safe__ = True

    @tool
    def echo(self, message: str) -> str:
        """Return the message unchanged."""
        return message

    @tool
    def add(self, a: float, b: float) -> float:
        """Add two numbers; two ints give an int."""
        return a + b

    @tool(supports_streaming=True)
    def progress(self, steps: int = 10, delay_ms: int = 50) -> Iterator[dict[str, Any]]:
        """Stream one progress report per step, waiting delay_ms between steps."""
        for i in range(1, steps + 1):
            if delay_ms:
                time.sleep(delay_ms / 1000.0)
            yield {"step": i, "total": steps, "percent": round(100.0 * i / steps, 2)}

    @tool
    def sleep(self, ms: int) -> int:
        """Sleep ms milliseconds (stopping early when the request is cancelled); return ms."""
        deadline = time.monotonic() + ms / 1000.0
        ctx = self.session_context
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or (ctx is not None and ctx.cancelled):
                return ms
            time.sleep(min(left, 0.005))

    @tool
    async def async_sleep(self, ms: int) -> int:
        """Sleep ms milliseconds on the worker's event loop; return ms."""
        await asyncio.sleep(ms / 1000.0)
        return ms

    @tool
    def fail(self, message: str = "boom") -> None:
        """Raise ValueError(message)."""
        raise ValueError(message)

    @tool
    def random_bytes(self, n: int = 16) -> bytes:
        """Return n deterministic bytes (0, 1, 2, ... modulo 256)."""
        return bytes(i % 256 for i in range(n))

    @tool
    def matrix(self, rows: int = 2, cols: int = 3) -> Any:
        """Return a rows x cols float64 numpy array counting from 0."""
        import numpy as np

        return np.arange(rows * cols, dtype=np.float64).reshape(rows, cols)

    @tool
    def noop(self) -> None:
        """Do nothing and return None (the benchmark's trivial call)."""
        return None

    @tool
    def describe(self, value: Any = None) -> dict[str, str]:
        """Describe how a value arrived: its Python type name and repr."""
        return {"type": type(value).__name__, "repr": repr(value)}

    @tool
    def tally(self, n: int = 1) -> int:
        """Add n to this session's tally, kept in the worker; return the total."""
        sid = self.session_context.session_id
        with _tallies_lock:
            total = _tallies[sid] = _tallies.get(sid, 0) + n
        return total

    @tool
    def ask_host(self, name: str, kwargs: dict[str, Any] | None = None) -> Any:
        """Call the host tool `name` with `kwargs` and return what it returns."""
        return self.session_context.call_host_tool(name, **(kwargs or {}))

    @staticmethod
    def on_session_release(session_id: str) -> None:
        with _tallies_lock:
            _tallies.pop(session_id, None)
