"""The showcase adapter: one tool for each thing an adapter can do.

Configure it as ``snakepit_bridge.adapters.showcase.ShowcaseAdapter`` (the
older path ``snakepit_bridge.showcase.ShowcaseAdapter`` names the same
class). Its chunk class is :class:`~snakepit_bridge.adapters.showcase.tool.StreamChunk`.
"""

from __future__ import annotations

from .adapter import ShowcaseAdapter, TextStats
from .tool import StreamChunk

__all__ = ["ShowcaseAdapter", "StreamChunk", "TextStats"]
