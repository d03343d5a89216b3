"""FFI helper file for tests/test_ffi.py: helpers handed host callbacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


def apply(f: Callable[..., Any], *args: Any) -> Any:
    """Call the callback with these arguments and return what the host answered."""
    return f(*args)


def apply_keyword(f: Callable[..., Any]) -> Any:
    return f(x=1)


def with_path(f: Callable[[Any], Any]) -> Any:
    """Hand the callback an object without a wire form: it crosses as a ref."""
    return f(Path("/tmp/for-the-host"))


def identity(f: Any) -> Any:
    return f


def kind(f: Any) -> str:
    return f"{type(f).__name__} callable={callable(f)} arity={f.arity}"
