from __future__ import annotations

__all__ = ["area"]


def area(width: float, height: float) -> float:
    return width * height


def not_exported() -> None:
    pass
