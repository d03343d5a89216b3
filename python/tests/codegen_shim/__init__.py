"""A package with a deprecated shim module, as libraries keep for old imports."""

from __future__ import annotations


def moved(x: float) -> float:
    return x * 2
