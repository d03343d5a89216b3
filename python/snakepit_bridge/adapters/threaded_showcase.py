"""``ThreadedShowcaseAdapter``: the thread-safe patterns, one tool each.

Run it in the thread profile: ``python -m snakepit_bridge.worker --adapter
snakepit_bridge.adapters.threaded_showcase.ThreadedShowcaseAdapter --profile
thread --threads 8`` (or a pool with ``profile = "thread"``). There one
instance serves every request, from several threads at once, and the tools
show how its state is kept safe:

* shared read-only state (``self.config``, ``self.weights``): read without a lock;
* per-thread state: ``get_thread_local``/``set_thread_local`` and a
  :class:`~snakepit_bridge.base_adapter_threaded.ThreadLocalStorage` of its own;
* shared mutable state (``self.results``, ``self.total_items``): changed
  under ``acquire_lock()``;
* statistics: ``get_stats()``, ``self._tracker`` and ``track_request()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from ..base_adapter_threaded import ThreadLocalStorage, ThreadSafeAdapter, thread_safe_method, tool

__all__ = ["ThreadedShowcaseAdapter"]


class ThreadedShowcaseAdapter(ThreadSafeAdapter):
    """Thread-safe tools over one shared instance (see the module documentation)."""

    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"name": "threaded-showcase", "scale": 2.0}
        self.weights: tuple[float, ...] = (0.5, 0.25, 0.125, 0.0625)
        self.scratch = ThreadLocalStorage()
        self.results: list[dict[str, Any]] = []
        self.total_items = 0

    @thread_safe_method
    @tool(description="Sum of squares of the data, scaled by the shared read-only config")
    def compute_intensive(self, data: list[float]) -> dict[str, Any]:
        value = sum(x * x for x in data) * self.config["scale"]
        with self.acquire_lock():
            self.total_items += len(data)
            self.results.append({"n": len(data), "value": value})
            count = len(self.results)
        return {"result": value, "request_number": count, "thread": threading.current_thread().name}

    @thread_safe_method
    @tool(description="Weighted sum of the data with a per-thread cache of results")
    def cached_compute(self, key: str, data: list[float]) -> dict[str, Any]:
        cache: dict[str, float] = self.get_thread_local("cache", {})
        if key in cache:
            return {"result": cache[key], "cached": True}
        value = sum(w * x for w, x in zip(self.weights, data))
        cache[key] = value
        self.set_thread_local("cache", cache)
        return {"result": value, "cached": False}

    @thread_safe_method
    @tool(description="Count calls made by the calling thread, in a ThreadLocalStorage")
    def thread_calls(self) -> dict[str, Any]:
        n = self.scratch.get("calls", 0) + 1
        self.scratch.set("calls", n)
        return {"thread": threading.current_thread().name, "calls_on_this_thread": n}

    @thread_safe_method
    @tool(description="Process a batch, each item counted as a request with track_request()")
    def process_batch(self, items: list[float]) -> dict[str, Any]:
        numbers = []
        for item in items:
            with self.track_request("batch_item") as n:
                numbers.append(n)
                with self.acquire_lock():
                    self.total_items += 1
        return {"processed": len(items), "request_numbers": numbers, "doubled": [2 * x for x in items]}

    @thread_safe_method
    @tool(description="Stream steps progress reports, each sent as soon as it is made", supports_streaming=True)
    def stream_progress(self, steps: int = 5, delay_ms: int = 0) -> Iterator[dict[str, Any]]:
        for i in range(1, steps + 1):
            if delay_ms:
                time.sleep(delay_ms / 1000.0)
            yield {"step": i, "total": steps, "thread": threading.current_thread().name}

    @thread_safe_method
    @tool(description="The adapter's statistics: get_stats() plus its shared totals")
    def get_thread_stats(self) -> dict[str, Any]:
        stats = self.get_stats()
        with self.acquire_lock():
            stats["total_items"] = self.total_items
            stats["results"] = len(self.results)
        return stats

    @tool(description="The request tracker's own summary (self._tracker.get_stats())")
    def tracker_stats(self) -> dict[str, int]:
        return self._tracker.get_stats()

    @thread_safe_method
    @tool(description="Forget the shared results and this thread's cache")
    def reset(self) -> dict[str, int]:
        with self.acquire_lock():
            dropped = len(self.results)
            self.results = []
            self.total_items = 0
        self.clear_thread_local("cache")
        return {"dropped": dropped}
