"""``ShowcaseAdapter``: values, errors, streams, cancellation, sessions,
telemetry and host calls, one small tool each.

Run it with ``python -m snakepit_bridge.worker --adapter
snakepit_bridge.adapters.showcase.ShowcaseAdapter``, or
``snakepit exec process_text --adapter snakepit_bridge.adapters.showcase.ShowcaseAdapter
--args '{"text": "Hello", "operation": "upper"}'``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ... import telemetry
from ...base_adapter import BaseAdapter, tool
from .tool import StreamChunk

__all__ = ["ShowcaseAdapter", "TextStats"]

# Per-session tallies, kept in the worker process between calls.
_tallies: dict[str, int] = {}
_tallies_lock = threading.Lock()

_OPERATIONS: dict[str, Callable[[str], Any]] = {
    "upper": str.upper,
    "lower": str.lower,
    "reverse": lambda s: s[::-1],
    "length": len,
    "title": str.title,
    "words": lambda s: len(s.split()),
    "strip": str.strip,
}


@dataclass(frozen=True, slots=True)
class TextStats:
    """What ``text_stats`` computes: an object that is not a wire value but
    offers ``to_dict()``, the first conversion graceful serialization tries."""

    characters: int
    words: int
    lines: int
    most_common: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "characters": self.characters,
            "words": self.words,
            "lines": self.lines,
            "most_common": self.most_common,
        }


class ShowcaseAdapter(BaseAdapter):
    """Tools that show how values, errors, streams and cancellation cross the bridge.

    Thread-safe, so the thread profile runs it too: the tools keep no state on
    the instance, and the one shared table (the tallies) is locked.
    """

    __thread_safe__ = True

    # ------------------------------------------------------------- values

    @tool
    def echo(self, message: str) -> str:
        """Return the message unchanged."""
        return message

    @tool
    def add(self, a: float, b: float) -> float:
        """Add two numbers; two ints give an int."""
        return a + b

    @tool("Apply an operation to a text: " + ", ".join(_OPERATIONS))
    def process_text(self, text: str, operation: str = "upper") -> dict[str, Any]:
        """Return the original text, the operation and its result."""
        op = _OPERATIONS.get(operation)
        if op is None:
            raise ValueError(f"unknown operation {operation!r}; operations: {', '.join(_OPERATIONS)}")
        return {"original": text, "operation": operation, "result": op(text)}

    @tool
    def text_stats(self, text: str) -> TextStats:
        """Count characters, words and lines of a text; the result is an object with to_dict()."""
        words = text.split()
        counts: dict[str, int] = {}
        for w in words:
            counts[w.lower()] = counts.get(w.lower(), 0) + 1
        most = max(counts, key=lambda w: (counts[w], w)) if counts else ""
        return TextStats(len(text), len(words), len(text.splitlines()) or (1 if text else 0), most)

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
    def fail(self, message: str = "boom") -> None:
        """Raise ValueError(message)."""
        raise ValueError(message)

    # ------------------------------------------------------------ streams

    @tool(supports_streaming=True)
    def progress(self, steps: int = 10, delay_ms: int = 50) -> Iterator[dict[str, Any]]:
        """Stream one progress report per step, waiting delay_ms between steps."""
        for i in range(1, steps + 1):
            if delay_ms:
                time.sleep(delay_ms / 1000.0)
            yield {"step": i, "total": steps, "percent": round(100.0 * i / steps, 2)}

    @tool("Stream count items as the showcase's own StreamChunk, the last one final", supports_streaming=True)
    def stream_items(self, count: int = 5) -> Iterator[StreamChunk]:
        for i in range(count):
            yield StreamChunk(
                data={"index": i + 1, "value": f"Item {i + 1}"},
                is_final=(i == count - 1),
                metadata={"remaining": count - i - 1},
            )

    # -------------------------------------------------- time, cancellation

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

    # ---------------------------------------------------------- telemetry

    @tool
    def traced_compute(self, n: int = 1000) -> dict[str, Any]:
        """Sum the squares below n inside a telemetry span, then emit an event with the result."""
        with telemetry.span("showcase.traced_compute", {"n": n}) as span:
            total = sum(i * i for i in range(n))
            span.measure("items", n)
        telemetry.emit("showcase.computed", {"n": n}, {"tool": "traced_compute"})
        return {"n": n, "sum_of_squares": total}

    # ----------------------------------------------------------- sessions

    @tool
    def session_info(self) -> dict[str, Any]:
        """The session id of the call (self.session_id and the session context's) and its metadata."""
        ctx = self.session_context
        return {
            "session_id": self.session_id,
            "context_session_id": ctx.session_id if ctx is not None else "",
            "metadata": ctx.request_metadata if ctx is not None else {},
        }

    @tool
    def tally(self, n: int = 1) -> int:
        """Add n to this session's tally, kept in the worker; return the total."""
        sid = self.session_id
        with _tallies_lock:
            total = _tallies[sid] = _tallies.get(sid, 0) + n
        return total

    @tool
    def ask_host(self, name: str, kwargs: dict[str, Any] | None = None) -> Any:
        """Call the host tool `name` with `kwargs` and return what it returns."""
        ctx = self.session_context
        if ctx is None:
            raise RuntimeError("ask_host needs a session context")
        return ctx.call_host_tool(name, **(kwargs or {}))

    @staticmethod
    def on_session_release(session_id: str) -> None:
        with _tallies_lock:
            _tallies.pop(session_id, None)
