"""``TemplateAdapter``: a starting point for an adapter of your own.

Copy this file into your project, rename the class, and run it with
``python -m snakepit_bridge.worker --adapter yourmodule.YourAdapter`` (or name
it as a pool's ``adapter``). What the worker does with it:

1. In the process profile every request gets a **new instance**: the
   worker calls ``YourAdapter()``, injects the request's
   :class:`~snakepit_bridge.session_context.SessionContext`
   (``self.session_context``; ``self.session_id`` is its session), calls
   ``initialize()``, runs the tool, then ``cleanup()``, even when the tool
   raised. Keep what is expensive to build (a model, a client) at module
   level, as ``_resources`` below does, so it is built once per process.
2. Tools are methods marked with ``@tool``: ``@tool``, ``@tool("what it
   does")`` or ``@tool(description=..., supports_streaming=True)``. Their
   annotated parameters are checked and described to the host.
3. A generator tool streams: each ``yield`` is one chunk when the caller asks
   for a stream, and the items come back as one list otherwise.
4. Return plain values (``None``, numbers, ``str``, ``bytes``, lists, dicts,
   numpy arrays, datetimes); raise an exception to fail the call: the caller
   gets its type, message and traceback.

To serve concurrent requests on one shared instance (the thread profile),
derive from :class:`~snakepit_bridge.base_adapter_threaded.ThreadSafeAdapter`
instead (see ``snakepit_bridge.adapters.threaded_showcase``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..base_adapter import BaseAdapter, tool

__all__ = ["TemplateAdapter"]

# Built once per worker process, on first use; shared by every request.
_resources: dict[str, Any] = {}


def _load_resources() -> dict[str, Any]:
    """Stands for loading a model or opening a client: replace with your own."""
    return {"greeting": "Hello"}


class TemplateAdapter(BaseAdapter):
    """A minimal adapter: a greeting, a computation and a stream."""

    def initialize(self) -> None:
        """Runs before each tool call: fetch what the tools need (cheaply)."""
        if not _resources:
            _resources.update(_load_resources())
        self.greeting: str = _resources["greeting"]

    def cleanup(self) -> None:
        """Runs after each tool call, even a failed one: release per-request resources."""

    @tool("Greet someone by name")
    def hello(self, name: str = "world") -> str:
        return f"{self.greeting}, {name}!"

    @tool(description="Add two numbers")
    def add(self, a: float, b: float) -> float:
        return a + b

    @tool(description="Stream the numbers 1 to n", supports_streaming=True)
    def count(self, n: int = 3) -> Iterator[int]:
        yield from range(1, n + 1)

    @tool(description="The session of the call and the request's metadata")
    def whoami(self) -> dict[str, Any]:
        ctx = self.session_context
        return {"session_id": self.session_id, "metadata": ctx.request_metadata if ctx is not None else {}}
