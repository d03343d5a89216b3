"""A small package for test_codegen: what each mode of ``codegen.describe`` finds.

``alpha`` is an attribute (imported here), ``beta`` is only named in
``__all__``; ``sub`` and ``wide`` are found by walking the package; ``_private``
and ``tests`` never are; ``broken`` fails to import.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Optional

from . import alpha
from .shapes import Shape

__all__ = ["Shape", "alpha", "beta", "count_up", "fetch", "scale", "top_function"]


def top_function(x: int, y: float = 1.5, *, label: Optional[str] = None) -> float:
    """Adds two numbers."""
    return x + y


def scale(shapes: list[Shape], factor: float | int = 2) -> dict[str, Shape]:
    return {str(i): s.scaled(factor) for i, s in enumerate(shapes)}


def count_up(limit: int) -> Iterator[int]:
    yield from range(limit)


async def fetch(key: str, *keys: str, **options: bool) -> bytes | None:
    return json.dumps([key, *keys, options]).encode()
