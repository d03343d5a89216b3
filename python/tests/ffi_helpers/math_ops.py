"""FFI helper file for tests/test_ffi.py: loaded by path, as ``math_ops.add`` etc."""

from __future__ import annotations

from dataclasses import dataclass

not_a_function = 42


def add(a: float, b: float) -> float:
    return a + b


def scaled(values: list[float], *, factor: float = 1.0) -> list[float]:
    return [v * factor for v in values]


@dataclass
class Point:
    """Needs its module in sys.modules while the file loads (dataclasses look it up)."""

    x: int
    y: int


def point(x: int, y: int) -> Point:
    return Point(x, y)


def module_name() -> str:
    return __name__
