"""The envelope a streaming tool may yield to control one chunk."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["StreamChunk"]


@dataclass(slots=True)
class StreamChunk:
    """One item of a streamed result.

    ``data`` becomes the chunk's value; ``is_final=True`` ends the stream after
    this chunk (the generator is closed); ``metadata`` travels with the chunk.
    """

    data: Any
    is_final: bool = False
    metadata: dict[str, Any] | None = None
