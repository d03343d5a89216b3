"""Tools the client's tests need beyond the showcase's: a stream that says
how far its producer got and whether it was closed, a call that records its
cancellation, and a tool that changes a session variable from Python. What
they observe goes to files the test names, since the worker is another
process."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from snakepit_bridge import BaseAdapter, tool


def _write(path: str, text: str) -> None:
    """Replace the file's content at once (a reader never sees half of it)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class ClientTestAdapter(BaseAdapter):
    __thread_safe__ = True

    @tool(supports_streaming=True)
    def produce(self, n: int, size: int = 0, progress: str = "", exit_marker: str = "") -> Iterator[dict[str, Any]]:
        """Yield n items of `size` padding bytes; before each, write how many
        have been produced to `progress`; on GeneratorExit, say so in `exit_marker`."""
        try:
            for i in range(n):
                if progress:
                    _write(progress, str(i + 1))
                yield {"i": i, "pad": b"x" * size}
        except GeneratorExit:
            if exit_marker:
                _write(exit_marker, "GeneratorExit")
            raise

    @tool
    def hold(self, ms: int, started: str = "", marker: str = "", release: str = "") -> str:
        """Say it started (in `started`), then wait ms milliseconds, until
        the file `release` exists, or until cancelled; a cancellation is
        written to `marker`."""
        if started:
            _write(started, "started")
        ctx = self.session_context
        deadline = time.monotonic() + ms / 1000.0
        while time.monotonic() < deadline:
            if ctx is not None and ctx.cancelled:
                if marker:
                    _write(marker, "cancelled")
                return "cancelled"
            if release and os.path.exists(release):
                return "released"
            time.sleep(0.005)
        return "finished"

    @tool
    def bump(self, name: str) -> Any:
        """Add 1 to the session variable `name`, from Python."""
        ctx = self.session_context
        value = ctx.get_variable(name) + 1
        ctx.set_variable(name, value)
        return value

    @tool
    def whoami(self) -> dict[str, Any]:
        """The worker's pid and the caller's session."""
        return {"pid": os.getpid(), "session_id": self.session_context.session_id}
