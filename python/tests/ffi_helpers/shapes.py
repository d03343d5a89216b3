"""FFI helper file for tests/test_ffi.py: values the codec cannot encode as they are."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def same_twice() -> list[Any]:
    """One object, twice: both places get the same ref id."""
    p = Path("/tmp/twice")
    return [p, p]


def cyclic() -> list[Any]:
    a: list[Any] = [1]
    a.append(a)
    return a


def cyclic_dict() -> dict[str, Any]:
    d: dict[str, Any] = {"name": "root"}
    d["self"] = d
    return d


def deep(levels: int) -> list[Any]:
    v: list[Any] = ["bottom"]
    for _ in range(levels - 1):
        v = [v]
    return v


def countdown(n: int):
    """A generator function (for snakepit.ffi.helper: a StreamRef)."""
    while n > 0:
        yield n
        n -= 1
