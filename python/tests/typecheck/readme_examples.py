"""The adapter examples of README.md, checked with ``mypy --strict``.

Each ```python block of the README's "Writing an adapter", "Calling the host"
and "Thread-safe adapters" sections appears here line for line (indented where
it needs a method around it); ``tests/python_typecheck.rs`` checks that they
still match and that this file type-checks against the package.
"""

import asyncio
from collections.abc import Iterator
from typing import Any
from snakepit_bridge import BaseAdapter, StreamChunk, tool

_cache: dict[str, Any] = {}          # module level: survives across requests


class MyAdapter(BaseAdapter):
    def initialize(self) -> None:    # optional, sync or async, every request
        self.model = _cache.setdefault("model", object())

    def cleanup(self) -> None:       # optional, sync or async, always runs
        pass

    @tool(description="Add two numbers")
    def add(self, a: float, b: float) -> float:
        return a + b

    @tool("Say hello")               # the description, positionally
    def hello(self) -> str:
        return f"hello, session {self.session_id!r}"

    @tool                            # description = the docstring
    async def fetch(self, url: str) -> bytes:
        """Fetch a URL."""
        await asyncio.sleep(0)       # any awaitable work
        return url.encode()

    @tool
    def lookup(self, key: str) -> Any:
        """A value the host keeps, through its `lookup` tool."""
        return self.session_context.call_host_tool("lookup", key=key)

    @tool(supports_streaming=True)
    def count(self, n: int = 3) -> Iterator[StreamChunk]:
        """Stream n items."""
        for i in range(n):
            yield StreamChunk({"i": i}, is_final=(i == n - 1))


class HostCallingAdapter(BaseAdapter):
    @tool
    def tune(self, d: dict[str, float]) -> None:
        """Calling the host."""
        ctx = self.session_context
        ctx.host_tools                      # {name: {"name", "description", "parameters": [...]}}, fetched once per request
        ctx.call_host_tool("validate", data=d, timeout=5.0)   # alias: call_elixir_tool
        var_id = ctx.register_variable("temperature", "float", 0.7, {"min": 0.0, "max": 2.0})
        ctx.get_variable("temperature")     # the value; get_variable_info() gives the whole variable
        ctx.set_variable("temperature", 0.9, {"why": "tuning"})
        ctx["temperature"] = 1.0            # sugar for set_variable / get_variable / "name" in ctx
        ctx.list_variables()                # {name: value}
        watch_id = ctx.watch_variable("temperature", lambda old, new, meta: ..., include_initial=True)
        ctx.unwatch_variable(watch_id)
        assert isinstance(var_id, str)


def load_model() -> object:
    return object()


from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method, tool

class CounterAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.model = load_model()         # shared read-only: no lock
        self.count = 0                    # shared mutable: lock it

    @thread_safe_method
    @tool(description="Increment counter")
    def increment(self) -> dict[str, int]:
        cache = self.get_thread_local("cache", {})   # per thread: no lock
        with self.acquire_lock():         # reentrant, one per instance
            self.count += 1
            return {"count": self.count}
