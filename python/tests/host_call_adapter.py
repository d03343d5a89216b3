"""Adapters whose tools call the host, for tests/test_host_calls.py (the test plays the host)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from snakepit_bridge import HostToolError
from snakepit_bridge.base_adapter import BaseAdapter, tool

# Module level: survives across requests (each request gets a new instance).
_lock = threading.Condition()
_watch_events: list[dict[str, Any]] = []
_released: list[str] = []
_failures: list[str] = []


def _record_update(tag: str):
    def callback(old_value: Any, new_value: Any, metadata: dict[str, str]) -> None:
        if new_value == "explode":
            raise RuntimeError(f"callback {tag} exploded")
        with _lock:
            _watch_events.append({"tag": tag, "old": old_value, "new": new_value, "metadata": dict(metadata)})
            _lock.notify_all()

    return callback


class HostCallAdapter(BaseAdapter):
    # Module-level state only, under _lock: safe to share between threads.
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.session_context = None

    def set_session_context(self, session_context: Any) -> None:
        self.session_context = session_context

    @classmethod
    def on_session_release(cls, session_id: str) -> None:
        if session_id.startswith("boom"):
            raise RuntimeError(f"cannot release {session_id}")
        if session_id.startswith("slow"):
            time.sleep(1.0)
        _released.append(session_id)

    # ------------------------------------------------------------ host tools

    @tool
    def call_host(
        self,
        name: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Call a host tool and return its result; its errors propagate."""
        try:
            return self.session_context.call_host_tool(name, *(args or []), timeout=timeout, **(kwargs or {}))
        except Exception as e:
            with _lock:
                _failures.append(type(e).__name__)
                _lock.notify_all()
            raise

    @tool
    async def async_call_host(self, name: str) -> Any:
        """An async tool calling the host (the call blocks this request's own event loop only)."""
        await asyncio.sleep(0)
        return self.session_context.call_host_tool(name)

    @tool
    def fan_out(self, count: int) -> list[Any]:
        """Call host tool "part" from `count` threads at once and return the results in order."""
        ctx = self.session_context
        results: list[Any] = [None] * count

        def part(i: int) -> None:
            results[i] = ctx.call_host_tool("part", i=i)

        threads = [threading.Thread(target=part, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    @tool
    def classify(self, name: str) -> dict[str, Any]:
        """Call a host tool that fails and describe the exception."""
        try:
            self.session_context.call_host_tool(name)
        except HostToolError as e:
            return {
                "type": type(e).__name__,
                "kind": e.kind,
                "message": e.message,
                "str": str(e),
                "details": e.details,
                "parameter": e.parameter,
                "python_type": e.python_type,
                "tool": e.tool,
                "runtime_error": isinstance(e, RuntimeError),
                "value_error": isinstance(e, ValueError),
                "timeout_error": isinstance(e, TimeoutError),
            }
        return {"type": None}

    @tool
    def failures(self, count: int, timeout: float = 5.0) -> list[str]:
        """Names of the exceptions call_host saw, oldest first, once there are `count` (or `timeout` s passed)."""
        deadline = time.monotonic() + timeout
        with _lock:
            while len(_failures) < count and _lock.wait(max(0.0, deadline - time.monotonic())):
                pass
            return list(_failures)

    @tool
    def roundtrip(self, value: Any) -> Any:
        """Send a value to the host tool "echo" and return what comes back."""
        return self.session_context.call_host_tool("echo", value)

    @tool
    def list_tools(self) -> dict[str, Any]:
        """The host tools, read three times (fetched once)."""
        ctx = self.session_context
        first = ctx.elixir_tools
        second = ctx.host_tools
        return {"tools": first, "cached": first is second and ctx.elixir_tools is first}

    @tool(description="Call an Elixir tool")
    def call_backend_tool(self, operation: str, data: dict) -> dict:
        if operation not in self.session_context.elixir_tools:
            raise ValueError(f"Tool '{operation}' not found")
        return self.session_context.call_elixir_tool(operation, input=data, options={"timeout": 5000})

    @tool(description="Validate and process")
    def validate_and_process(self, data: dict[str, Any]) -> dict[str, Any]:
        validation = self.session_context.call_elixir_tool("validate", data=data)
        if not validation.get("valid"):
            return {"error": "Validation failed"}
        result = self.process_data(data)
        self.session_context.call_elixir_tool("store_result", result=result)
        return {"success": True, "result": result}

    def process_data(self, data: dict[str, Any]) -> dict[str, Any]:
        return {k: v * 2 for k, v in data.items()}

    @tool
    def nest(self, level: int, depth: int) -> dict[str, Any]:
        """Call host tool "reenter" with level + 1 until depth is reached."""
        if level >= depth:
            return {"level": level}
        inner = self.session_context.call_host_tool("reenter", level=level + 1, depth=depth)
        return {"level": level, "inner": inner}

    @tool
    def maybe_host(self, call: bool) -> dict[str, Any]:
        """Quick unless `call`; reports whether it ran on the thread reading the socket."""
        ctx = self.session_context
        # The context's host link gives slots back to the worker that runs it.
        worker = ctx._host.wait_begin.__self__
        ie = worker.inline_ex
        inline = ie is not None and ie.current is ctx._request
        result = ctx.call_host_tool("ping_host") if call else None
        return {"inline": inline, "result": result}

    # ------------------------------------------------------------- variables

    @tool
    def variables_tour(self) -> dict[str, Any]:
        """Register, read, change, list and delete variables the way the reference does."""
        ctx = self.session_context
        var_id = ctx.register_variable("temperature", "float", 0.7, {"min": 0.0, "max": 2.0})
        value = ctx.get_variable("temperature")
        info = ctx.get_variable_info(var_id)
        updated = ctx.set_variable("temperature", 0.9, {"source": "dspy_module"})
        listed = ctx.list_variables()
        sugar = ctx["temperature"]
        ctx["temperature"] = 1.1
        present = "temperature" in ctx
        ctx.delete_variable("temperature")
        absent = "temperature" not in ctx
        try:
            ctx["temperature"]
            missing = "no error"
        except KeyError as e:
            missing = f"KeyError {e.args[0]}"
        return {
            "id": var_id,
            "value": value,
            "info": info,
            "updated": updated,
            "listed": listed,
            "sugar": sugar,
            "present": present,
            "absent": absent,
            "missing": missing,
        }

    @tool
    def set_var(self, identifier: str, value: Any) -> dict[str, Any]:
        """set_variable; constraint errors propagate."""
        return self.session_context.set_variable(identifier, value)

    @tool
    def watch(self, identifier: str, tag: str, include_initial: bool = False) -> str:
        """Watch a variable, recording its updates under `tag`."""
        return self.session_context.watch_variable(identifier, _record_update(tag), include_initial=include_initial)

    @tool
    def unwatch(self, watch_id: str) -> None:
        self.session_context.unwatch_variable(watch_id)

    @tool
    def watch_events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until `count` updates were recorded (at most `timeout` s) and return them all."""
        deadline = time.monotonic() + timeout
        with _lock:
            while len(_watch_events) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                _lock.wait(left)
            return list(_watch_events)

    @tool
    def released(self) -> list[str]:
        """Sessions whose release hook ran."""
        return list(_released)


class PlainHookAdapter(BaseAdapter):
    """Its release hook is a plain method: it runs on a new instance."""

    @tool
    def noop(self) -> None:
        return None

    def on_session_release(self, session_id: str) -> None:
        if self.session_context.session_id != session_id:
            raise AssertionError("context of the release hook has another session")
        raise ValueError(f"plain hook saw {session_id}")
