"""Streams for the batching tests: generators that pause until the test says
go (a file it creates), fail midway, or end with a final chunk."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, List

from snakepit_bridge import BaseAdapter, tool

_closed: List[str] = []

# How long a paused generator waits for the test before giving up.
_PATIENCE_S = 30.0


def _released(gate: str, step: int) -> bool:
    return os.path.exists(os.path.join(gate, str(step)))


class StreamBatchAdapter(BaseAdapter):
    __thread_safe__ = True

    @tool(supports_streaming=True)
    def ints(self, n: int):
        """0, 1, ..., n - 1 as fast as they come."""
        yield from range(n)

    @tool(supports_streaming=True)
    def tagged(self, tag: str = "t"):
        """Yield integers forever; record when GeneratorExit reaches the generator."""
        i = 0
        try:
            while True:
                yield i
                i += 1
        except GeneratorExit:
            _closed.append(tag)
            raise

    @tool(supports_streaming=True)
    def pairs(self, gate: str, steps: int):
        """Two items at once per step, then a pause until the file `gate/<step>` exists."""
        for step in range(steps):
            yield 2 * step
            yield 2 * step + 1
            deadline = time.monotonic() + _PATIENCE_S
            while not _released(gate, step):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"step {step} was never released")
                time.sleep(0.001)

    @tool(supports_streaming=True)
    async def async_pairs(self, gate: str, steps: int):
        """`pairs`, awaiting between the steps."""
        for step in range(steps):
            yield 2 * step
            yield 2 * step + 1
            deadline = time.monotonic() + _PATIENCE_S
            while not _released(gate, step):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"step {step} was never released")
                await asyncio.sleep(0.001)

    @tool(supports_streaming=True)
    def fails_after(self, n: int):
        """n items, then an error."""
        yield from range(n)
        raise ValueError(f"failed after {n}")

    @tool(supports_streaming=True)
    def ends_final(self, n: int):
        """n items, the last one final (no closing chunk follows)."""
        for i in range(n):
            yield {"data": i, "is_final": i == n - 1}

    @tool(supports_streaming=True)
    def mixed(self, rounds: int):
        """Small items between ones that need a frame of their own: a long
        str, a dict, an item with metadata; the last item final."""
        from snakepit_bridge import StreamChunk

        for r in range(rounds):
            yield from (r, -r * 1000003, r / 3, r % 2 == 0, f"s{r}")
            yield "x" * 3000
            yield {"data": {"round": r}, "is_final": False}
            yield StreamChunk(data=r, metadata={"round": r})
        yield {"data": "end", "is_final": True}

    @tool
    def closed(self) -> List[Any]:
        """Tags of the streams whose generator was closed."""
        return list(_closed)
