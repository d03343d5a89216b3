"""An adapter whose tools misbehave the ways real code does: values that are
not UTF-8, exceptions that are not ``Exception``s, host calls refused.

Thread-safe (no state but a lock-guarded list), so both profiles run it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from snakepit_bridge import StreamChunk, ThreadSafeAdapter, telemetry, tool
from snakepit_bridge.errors import HostToolError

# A str as os.listdir gives for a file name that is not UTF-8.
NOT_UTF8 = b"caf\xe9.txt".decode("utf-8", "surrogateescape")

_released: list[str] = []
_released_lock = threading.Lock()


def _base_exception(kind: str) -> BaseException:
    if kind == "SystemExit":
        return SystemExit(3)
    if kind == "KeyboardInterrupt":
        return KeyboardInterrupt("interrupted by the tool")
    if kind == "GeneratorExit":
        return GeneratorExit("generator exit by the tool")
    raise ValueError(kind)


class HostileAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    @tool
    def sleep(self, ms: int) -> int:
        time.sleep(ms / 1000.0)
        return ms

    @tool
    def echo(self, value: Any = None) -> Any:
        return value

    # ------------------------------------------------------ BaseException

    @tool
    def raise_base(self, kind: str) -> None:
        raise _base_exception(kind)

    @tool
    async def async_raise_base(self, kind: str) -> None:
        raise _base_exception(kind)

    @tool(supports_streaming=True)
    def stream_raise_base(self, kind: str) -> Iterator[int]:
        yield 1
        raise _base_exception(kind)

    @tool
    def argparse_exit(self) -> None:
        import argparse

        p = argparse.ArgumentParser(prog="tool")
        p.add_argument("--n", type=int, required=True)
        p.parse_args([])

    def on_session_release(self, session_id: str) -> None:
        with _released_lock:
            _released.append(session_id)
        if session_id.startswith("raise:"):
            raise _base_exception(session_id.removeprefix("raise:"))

    @tool
    def released(self) -> list[str]:
        with _released_lock:
            return list(_released)

    # ------------------------------------------------------ lone surrogates

    @tool
    def not_utf8_result(self) -> list[Any]:
        return [1, "fine", NOT_UTF8]

    @tool
    def not_utf8_scalar(self) -> str:
        return NOT_UTF8

    @tool
    def not_utf8_key(self) -> dict[str, int]:
        return {"ok": 1, NOT_UTF8: 2}

    @tool
    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    @tool
    def not_utf8_error(self) -> None:
        raise ValueError(f"cannot open {NOT_UTF8}")

    @tool
    def not_utf8_exception_type(self) -> None:
        # A module name from a file name that is not UTF-8.
        raise type("Bad", (Exception,), {"__module__": "mod_" + NOT_UTF8})("oops")

    @tool(supports_streaming=True)
    def not_utf8_stream(self) -> Iterator[str]:
        yield "first"
        yield NOT_UTF8

    @tool(supports_streaming=True)
    def not_utf8_chunk_metadata(self) -> Iterator[Any]:
        yield StreamChunk(data=1, metadata={NOT_UTF8: "x"})

    @tool
    def not_utf8_telemetry(self) -> str:
        telemetry.emit("event " + NOT_UTF8, {"m " + NOT_UTF8: 1.0}, {"k " + NOT_UTF8: "v " + NOT_UTF8, "n": 1})
        with telemetry.span("span " + NOT_UTF8, {"path": NOT_UTF8}):
            pass
        return "sent"

    @tool
    def not_utf8_host_arg(self) -> Any:
        return self.session_context.call_host_tool("greet", NOT_UTF8)

    @tool
    def not_utf8_host_kwarg(self) -> Any:
        return self.session_context.call_host_tool("greet", **{NOT_UTF8: 1})

    # ------------------------------------------------------ host calls refused

    @tool
    def call_host_or_busy(self, name: str) -> dict[str, Any]:
        from snakepit_bridge.errors import HostCallRejected

        try:
            return {"value": self.session_context.call_host_tool(name)}
        except HostCallRejected as e:
            return {
                "rejected": type(e).__name__,
                "kind": e.kind,
                "message": e.message,
                "host_tool_error": isinstance(e, HostToolError),
            }
