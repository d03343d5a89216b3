"""Adapters whose streams yield their own chunk classes, and tools served by execute_tool."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from snakepit_bridge import BaseAdapter, StreamChunk, tool


class StreamChunk2:
    """An adapter's own chunk class: anything with ``data`` and ``is_final``."""

    def __init__(self, data: Any, is_final: bool = False) -> None:
        self.data = data
        self.is_final = is_final


@dataclass
class TaggedChunk:
    data: Any
    is_final: bool
    metadata: dict[str, Any]


class SubChunk(StreamChunk):
    """A subclass of the package's own StreamChunk."""


class NotAChunk:
    """Has ``data`` but no ``is_final``: plain data (and no wire form)."""

    def __init__(self) -> None:
        self.data = 1


_closed: list[str] = []


class DuckStreamAdapter(BaseAdapter):
    @tool("Stream n items wrapped in the adapter's own chunk class", supports_streaming=True)
    def own_chunks(self, n: int = 3) -> Iterator[StreamChunk2]:
        for i in range(n):
            yield StreamChunk2({"index": i + 1, "total": n}, is_final=(i == n - 1))

    @tool(supports_streaming=True)
    def final_early(self) -> Iterator[Any]:
        """Marks the second item final; what follows is never sent."""
        try:
            yield StreamChunk2("a")
            yield StreamChunk2("b", is_final=True)
            yield StreamChunk2("never")
        finally:
            _closed.append("final_early")

    @tool(supports_streaming=True)
    def tagged(self) -> Iterator[TaggedChunk]:
        """A dataclass chunk with metadata."""
        yield TaggedChunk({"x": 1}, False, {"stage": "one"})
        yield TaggedChunk({"x": 2}, True, {"stage": "two"})

    @tool(supports_streaming=True)
    def subclassed(self) -> Iterator[SubChunk]:
        yield SubChunk("s1")
        yield SubChunk("s2", is_final=True)

    @tool(supports_streaming=True)
    def mixed(self) -> Iterator[Any]:
        yield 1
        yield "two"
        yield StreamChunk2([3])
        yield {"data": 4, "is_final": False}
        yield StreamChunk(5)

    @tool
    def closed(self) -> list[str]:
        return list(_closed)

    def execute_tool(self, tool_name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        """Tools not declared with @tool: generators and a plain one."""
        if tool_name == "dyn_count":
            n = int(arguments.get("n", 3))
            return (StreamChunk2({"i": i}, is_final=(i == n - 1)) for i in range(n))
        if tool_name == "dyn_forever":
            return self._forever()
        if tool_name == "dyn_forever_text":
            return ("x" * 100 for _ in itertools.count())
        if tool_name == "dyn_forever_async":
            return self._forever_async()
        if tool_name == "dyn_stalled_async":
            return self._stalled_async()
        if tool_name == "dyn_plain":
            return {"tool": tool_name, "arguments": arguments, "session": context.session_id if context else None}
        return super().execute_tool(tool_name, arguments, context)

    def _forever(self) -> Iterator[int]:
        try:
            for i in itertools.count():
                yield i
        finally:
            _closed.append("dyn_forever")

    async def _forever_async(self) -> AsyncIterator[int]:
        for i in itertools.count():
            await asyncio.sleep(0)
            yield i

    async def _stalled_async(self) -> AsyncIterator[int]:
        try:
            yield 0
            await asyncio.sleep(3600)
            yield 1
        finally:
            _closed.append("dyn_stalled_async")
