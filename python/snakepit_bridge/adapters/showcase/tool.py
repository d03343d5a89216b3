"""The showcase's own stream chunk class.

A streaming tool may yield any object with ``data`` and ``is_final``
attributes to control its chunks; this is the showcase's. Adapters may import
it (``from snakepit_bridge.adapters.showcase.tool import StreamChunk``) or
define their own: the worker recognises both, and
:class:`snakepit_bridge.StreamChunk` as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["StreamChunk"]


@dataclass(slots=True)
class StreamChunk:
    """One item of a stream: ``data`` is the chunk's value, ``is_final=True``
    ends the stream after it, ``metadata`` (a dict) travels with it."""

    data: Any
    is_final: bool = False
    metadata: dict[str, Any] | None = None
