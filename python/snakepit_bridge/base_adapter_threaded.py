"""Adapters that serve several requests at once: :class:`ThreadSafeAdapter` and ``@thread_safe_method``.

Usage, as in the thread-safe adapter guide::

    from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method, tool

    class CounterAdapter(ThreadSafeAdapter):
        __thread_safe__ = True

        def __init__(self):
            super().__init__()
            self.count = 0

        @thread_safe_method
        @tool(description="Increment counter")
        def increment(self) -> dict:
            with self.acquire_lock():
                self.count += 1
                return {"count": self.count}

Lifecycle
---------
Which instance serves a request depends on the worker profile and on the
class's ``__thread_safe__`` declaration (a class attribute; inherited
declarations count, and :class:`ThreadSafeAdapter` declares it):

* **thread profile** (``--profile thread``): the class must declare
  ``__thread_safe__ = True``, or the worker refuses to start (a
  ``STARTUP_FAILED`` error naming the class). The worker creates **one
  instance** at start-up, calls its ``initialize()`` once (a failure there
  is a start-up failure), serves every request on that instance, from up to
  ``--threads`` threads at once, and calls ``cleanup()`` once when it shuts
  down (on Shutdown after the grace period, or when the host closes the
  connection; requests still running are not waited for beyond that).
  State kept on ``self`` (a loaded model, counters, logs) is therefore shared
  by all requests, which is what the guide's three patterns are about:
  read-only state needs no lock, per-thread state goes through
  :meth:`ThreadSafeAdapter.get_thread_local`, mutable shared state is changed
  under :meth:`ThreadSafeAdapter.acquire_lock`.
* **process profile** (the default): the per-request lifecycle of every
  adapter, thread-safe or not: a new instance per request, ``initialize()``
  before the tool and ``cleanup()`` after it. State on ``self`` does not
  survive the request there; keep it at module level if it must.

On the shared instance, ``self.session_context`` is still the context of the
request the current thread serves (the attribute is request-scoped while a
request runs; ``set_session_context`` is called for every request).

What ``@thread_safe_method`` does
---------------------------------
It does **not** lock: concurrent calls run in parallel, which is the point of
the thread profile. It keeps the method's signature and ``@tool`` metadata
(in either decorator order), works on plain, async and generator methods,
marks the function with ``__thread_safe__ = True``, and around every call:

* counts it in the adapter's statistics (:meth:`ThreadSafeAdapter.get_stats_dict`):
  calls, calls running now, the most that ran at once, failures, time, and
  calls per thread and per method;
* reports it to every enabled
  :class:`~snakepit_bridge.thread_safety_checker.ThreadSafetyChecker`, which
  can then tell which methods run concurrently on one instance, and flag
  attribute assignments made outside the lock meanwhile.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from . import thread_safety_checker as _checking
from .base_adapter import TOOL_ATTR, BaseAdapter, ToolMetadata, tool

__all__ = ["ThreadSafeAdapter", "is_thread_safe", "thread_safe_method", "tool"]

F = TypeVar("F", bound=Callable[..., Any])

_STATE = "_snakepit_state"
_state_lock = threading.Lock()


def is_thread_safe(adapter: Any) -> bool:
    """Whether an adapter class (or instance) declares ``__thread_safe__ = True``.

    Only the value ``True`` counts; the declaration may be inherited.
    """
    cls = adapter if isinstance(adapter, type) else type(adapter)
    return getattr(cls, "__thread_safe__", False) is True


class _AdapterState:
    """The lock, thread-local storage and statistics of one ThreadSafeAdapter instance."""

    __slots__ = (
        "lock",
        "local",
        "stats_lock",
        "total",
        "active",
        "max_active",
        "errors",
        "total_time",
        "by_thread",
        "by_method",
        "created",
    )

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.local = threading.local()
        self.stats_lock = threading.Lock()
        self.total = 0
        self.active = 0
        self.max_active = 0
        self.errors = 0
        self.total_time = 0.0
        self.by_thread: dict[str, int] = {}
        self.by_method: dict[str, int] = {}
        self.created = time.time()

    def _is_owned(self) -> bool:
        # Lets the thread-safety checker see that acquire_lock() is held.
        return self.lock._is_owned()  # type: ignore[attr-defined]


def _state_of(adapter: Any) -> _AdapterState:
    """The state of a ThreadSafeAdapter instance, created on first use.

    Created here rather than only in ``__init__`` so that a subclass whose
    ``__init__`` forgets ``super().__init__()`` still gets a lock."""
    d = adapter.__dict__
    st = d.get(_STATE)
    if st is None:
        with _state_lock:
            st = d.get(_STATE)
            if st is None:
                st = _AdapterState()
                d[_STATE] = st
    return st


class ThreadSafeAdapter(BaseAdapter):
    """Base class of adapters that serve concurrent requests on one instance.

    Declares ``__thread_safe__ = True`` (subclasses inherit the declaration;
    the guide recommends repeating it in each class as documentation) and
    provides the tools of the guide's three patterns: a reentrant lock for
    shared mutable state (:meth:`acquire_lock`), thread-local storage
    (:meth:`get_thread_local` and friends) and statistics
    (:meth:`get_stats_dict`). See the module documentation for the lifecycle.

    While a :class:`~snakepit_bridge.thread_safety_checker.ThreadSafetyChecker`
    is enabled, every attribute assignment on an instance is reported to it
    (which costs a little on each assignment; nothing when no checker is on).
    """

    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        _state_of(self)

    def __setattr__(self, name: str, value: Any) -> None:
        if _checking.live_checkers:
            for checker in _checking.active_checkers():
                checker.note_assignment(self, name)
        super().__setattr__(name, value)

    # ----------------------------------------------------------------- lock

    def acquire_lock(self) -> Any:
        """The adapter's reentrant lock, for a ``with`` statement.

        ``with self.acquire_lock():`` holds it for the block. It is one
        ``threading.RLock`` per instance, so a method holding it may call
        another that takes it again. Hold it briefly: compute outside, then
        lock to update shared state.
        """
        return _state_of(self).lock

    # --------------------------------------------------------- thread-local

    def get_thread_local(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key`` for the current thread, or ``default``.

        Thread-local values are private to one thread of one instance: no
        lock is needed to read or change them.
        """
        return getattr(_state_of(self).local, key, default)

    def set_thread_local(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` for the current thread."""
        setattr(_state_of(self).local, key, value)

    def clear_thread_local(self, key: str | None = None) -> None:
        """Forget the current thread's value under ``key``, or all its values when ``key`` is None."""
        local = _state_of(self).local
        if key is None:
            local.__dict__.clear()
        else:
            local.__dict__.pop(key, None)

    # ---------------------------------------------------------------- stats

    def get_stats_dict(self) -> dict[str, Any]:
        """Statistics of this instance's ``@thread_safe_method`` calls, as a new dict.

        Keys: ``adapter_class``; ``thread_safe`` (the declaration);
        ``total_requests`` (calls started, the running ones and this one's
        caller included when it is a ``@thread_safe_method``);
        ``active_requests`` (running now); ``max_concurrent_requests`` (the
        most that ran at the same moment); ``errors`` (calls that raised);
        ``total_time_seconds`` (of finished calls); ``threads_seen`` (distinct
        thread names); ``requests_by_thread`` (thread name -> calls); ``requests_by_method``
        (method -> calls); ``current_thread`` (the caller's thread name);
        ``uptime_seconds`` (since the instance was created); ``gil_enabled``
        (whether this interpreter runs with the GIL). The caller may add its
        own keys to the dict it gets.
        """
        st = _state_of(self)
        with st.stats_lock:
            stats: dict[str, Any] = {
                "adapter_class": type(self).__name__,
                "thread_safe": is_thread_safe(self),
                "total_requests": st.total,
                "active_requests": st.active,
                "max_concurrent_requests": st.max_active,
                "errors": st.errors,
                "total_time_seconds": st.total_time,
                "threads_seen": len(st.by_thread),
                "requests_by_thread": dict(st.by_thread),
                "requests_by_method": dict(st.by_method),
            }
        stats["current_thread"] = threading.current_thread().name
        stats["uptime_seconds"] = time.time() - st.created
        gil = getattr(sys, "_is_gil_enabled", None)
        stats["gil_enabled"] = bool(gil()) if gil is not None else True
        return stats


# ------------------------------------------------------------ the decorator


def _begin(adapter: Any, method: str) -> tuple[_AdapterState | None, tuple[Any, ...], float]:
    st = _state_of(adapter) if isinstance(adapter, ThreadSafeAdapter) else None
    checkers = _checking.active_checkers() if _checking.live_checkers else ()
    entered = 0
    try:
        for checker in checkers:
            checker.enter(method, adapter)
            entered += 1
    except BaseException:
        for checker in checkers[:entered]:
            checker.exit(method, adapter)
        raise
    if st is not None:
        thread = threading.current_thread()
        with st.stats_lock:
            st.total += 1
            st.active += 1
            if st.active > st.max_active:
                st.max_active = st.active
            st.by_thread[thread.name] = st.by_thread.get(thread.name, 0) + 1
            st.by_method[method] = st.by_method.get(method, 0) + 1
    return st, checkers, time.perf_counter()


def _end(
    adapter: Any, method: str, token: tuple[_AdapterState | None, tuple[Any, ...], float], failed: bool
) -> None:
    st, checkers, t0 = token
    elapsed = time.perf_counter() - t0
    if st is not None:
        with st.stats_lock:
            st.active -= 1
            st.total_time += elapsed
            if failed:
                st.errors += 1
    for checker in checkers:
        checker.exit(method, adapter, elapsed)


def thread_safe_method(func: F) -> F:
    """Mark an adapter method as safe to run concurrently, and track its calls.

    It takes no lock (see the module documentation): protect shared mutable
    state with ``self.acquire_lock()`` inside the method. It records each
    call in the instance's statistics and reports it to enabled
    thread-safety checkers. Composes with ``@tool`` in either order and
    works on plain, ``async`` and generator methods.
    """
    inner = inspect.unwrap(func)
    name = getattr(func, "__name__", "method")
    wrapper: Callable[..., Any]

    if inspect.isasyncgenfunction(inner):

        @functools.wraps(func)
        async def async_gen_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            token = _begin(self, name)
            failed = False
            agen = func(self, *args, **kwargs)
            try:
                async for item in agen:
                    yield item
            except GeneratorExit:
                raise
            except BaseException:
                failed = True
                raise
            finally:
                try:
                    await agen.aclose()
                finally:
                    _end(self, name, token, failed)

        wrapper = async_gen_wrapper
    elif inspect.iscoroutinefunction(inner):

        @functools.wraps(func)
        async def async_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            token = _begin(self, name)
            failed = False
            try:
                return await func(self, *args, **kwargs)
            except BaseException:
                failed = True
                raise
            finally:
                _end(self, name, token, failed)

        wrapper = async_wrapper
    elif inspect.isgeneratorfunction(inner):

        @functools.wraps(func)
        def gen_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            token = _begin(self, name)
            failed = False
            try:
                return (yield from func(self, *args, **kwargs))
            except GeneratorExit:
                raise
            except BaseException:
                failed = True
                raise
            finally:
                _end(self, name, token, failed)

        wrapper = gen_wrapper
    else:

        @functools.wraps(func)
        def sync_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            token = _begin(self, name)
            failed = False
            try:
                return func(self, *args, **kwargs)
            except BaseException:
                failed = True
                raise
            finally:
                _end(self, name, token, failed)

        wrapper = sync_wrapper

    meta = getattr(func, TOOL_ATTR, None)
    if isinstance(meta, ToolMetadata):
        # @thread_safe_method over @tool: the tool is the wrapper now.
        setattr(wrapper, TOOL_ATTR, dataclasses.replace(meta, function=wrapper))
    wrapper.__thread_safe__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
