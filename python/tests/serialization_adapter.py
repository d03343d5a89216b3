"""Tools returning objects without a wire form, for tests/test_serialization.py."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

from snakepit_bridge import BaseAdapter, StreamChunk, tool


class InternalState:
    pass


class MyResponse:
    def __init__(self, data: Any, status: int) -> None:
        self.data = data
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "status": self.status, "state": InternalState()}


class APIClient:
    def __repr__(self) -> str:
        return "APIClient(api_key='sk-abc123xyz789', token='Bearer eyJhbGciOi.payload.sig')"


class Endless:
    """Each conversion gives another object to convert."""

    def to_dict(self) -> Any:
        return Endless()


class SerializationAdapter(BaseAdapter):
    @tool
    def mixed(self) -> dict[str, Any]:
        """Wire values, a convertible object and one that is not."""
        return {
            "timestamp": datetime.datetime(2024, 1, 11, 10, 30),
            "count": 42,
            "items": ["a", "b", "c"],
            "blob": b"\x00\x01",
            "response": MyResponse("hello", 200),
            "internal": InternalState(),
        }

    @tool
    def plain(self) -> dict[str, Any]:
        """Wire values only."""
        return {"count": 42, "items": [1.5, "x", None], "when": datetime.date(2024, 1, 11)}

    @tool
    def secret(self) -> Any:
        """An object whose repr holds secrets."""
        return [APIClient()]

    @tool
    def cyclic(self) -> Any:
        """A list that contains itself, and an endlessly converting object."""
        loop: list[Any] = [1]
        loop.append(loop)
        return {"loop": loop, "endless": Endless()}

    @tool
    def deep(self, levels: int = 200) -> Any:
        """Lists nested deeper than a frame can carry, and an object at the bottom."""
        v: Any = InternalState()
        for _ in range(levels):
            v = [v]
        return v

    @tool
    def bad_text(self) -> Any:
        """A str that is not valid UTF-8 beside an unencodable object."""
        return {"name": "caf\udce9", "obj": InternalState()}

    @tool(supports_streaming=True)
    def items(self) -> Iterator[Any]:
        """A stream whose second and third items hold unencodable objects."""
        yield {"i": 0}
        yield {"i": 1, "obj": InternalState()}
        yield StreamChunk({"i": 2, "response": MyResponse("x", 1)}, is_final=True)
