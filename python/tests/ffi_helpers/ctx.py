"""FFI helper file for tests/test_ffi.py: a context manager that records what ``__exit__`` got."""

from __future__ import annotations

from typing import Any


class Recorder:
    def __init__(self, suppress: bool = False) -> None:
        self.suppress = suppress
        self.entered = False
        # (exception class name, its module, message, whether it is an instance of the class,
        #  whether the traceback was None) of the __exit__ call.
        self.got: tuple[Any, ...] | None = None

    def __enter__(self) -> Recorder:
        self.entered = True
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            self.got = (None, None, None, exc is None, tb is None)
        else:
            self.got = (exc_type.__name__, exc_type.__module__, str(exc), isinstance(exc, exc_type), tb is None)
        return self.suppress


def recorder(suppress: bool = False) -> Recorder:
    return Recorder(suppress)
