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

* counts it in the adapter's statistics (:meth:`ThreadSafeAdapter.get_stats_dict`
  and the instance's :class:`RequestTracker`, ``self._tracker``): calls, calls
  running now, the most that ran at once, failures, time, and calls per
  thread and per method;
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from . import thread_safety_checker as _checking
from .base_adapter import TOOL_ATTR, BaseAdapter, ToolMetadata, tool

__all__ = [
    "RequestTracker",
    "ThreadLocalStorage",
    "ThreadSafeAdapter",
    "is_thread_safe",
    "require_thread_safe",
    "thread_safe_method",
    "tool",
    "validate_thread_safety",
]

F = TypeVar("F", bound=Callable[..., Any])

_STATE = "_snakepit_state"
_state_lock = threading.Lock()


def is_thread_safe(adapter: Any) -> bool:
    """Whether an adapter class (or instance) declares ``__thread_safe__ = True``.

    Only the value ``True`` counts; the declaration may be inherited.
    """
    cls = adapter if isinstance(adapter, type) else type(adapter)
    return getattr(cls, "__thread_safe__", False) is True


class ThreadLocalStorage:
    """Values private to each thread: what one thread stores, only that thread reads.

    ``get(key, default=None)``, ``set(key, value)``, ``delete(key)`` (a
    missing key is no error) and ``clear()`` (the calling thread's values
    only). No lock is needed around them. A :class:`ThreadSafeAdapter` keeps
    one at ``self._thread_local``, the storage behind
    :meth:`ThreadSafeAdapter.get_thread_local` and friends.
    """

    __slots__ = ("_local",)

    def __init__(self, local: threading.local | None = None) -> None:
        self._local = local if local is not None else threading.local()

    def get(self, key: str, default: Any = None) -> Any:
        """The calling thread's value under ``key``, or ``default``."""
        return getattr(self._local, key, default)

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` for the calling thread."""
        setattr(self._local, key, value)

    def delete(self, key: str) -> None:
        """Forget the calling thread's value under ``key``, if any."""
        self._local.__dict__.pop(key, None)

    def clear(self) -> None:
        """Forget all the calling thread's values."""
        self._local.__dict__.clear()


class RequestTracker:
    """Counts requests by thread: how many started, how many run now.

    ``start_request(thread_id=None)`` counts one (the calling thread's by
    default) and returns its number (1, 2, ...); ``end_request(thread_id=None)``
    ends one; :meth:`get_stats` summarises. The attributes
    ``total_requests``, ``requests_by_thread`` and ``active_requests`` (thread
    ident -> count; threads with none running are left out) may be read
    under ``lock``.

    A :class:`ThreadSafeAdapter` keeps one at ``self._tracker``: every
    ``@thread_safe_method`` call and every :meth:`ThreadSafeAdapter.track_request`
    block is counted there.
    """

    __slots__ = ("lock", "total_requests", "requests_by_thread", "active_requests")

    def __init__(self, lock: threading.Lock | None = None) -> None:
        self.lock = lock if lock is not None else threading.Lock()
        self.total_requests = 0
        self.requests_by_thread: dict[int, int] = {}
        self.active_requests: dict[int, int] = {}

    def _start_locked(self, thread_id: int) -> int:
        self.total_requests += 1
        self.requests_by_thread[thread_id] = self.requests_by_thread.get(thread_id, 0) + 1
        self.active_requests[thread_id] = self.active_requests.get(thread_id, 0) + 1
        return self.total_requests

    def _end_locked(self, thread_id: int) -> None:
        left = self.active_requests.get(thread_id, 0) - 1
        if left > 0:
            self.active_requests[thread_id] = left
        else:
            self.active_requests.pop(thread_id, None)

    def start_request(self, thread_id: int | None = None) -> int:
        """Count a request starting on ``thread_id`` (default: the calling thread); return its number."""
        with self.lock:
            return self._start_locked(threading.get_ident() if thread_id is None else thread_id)

    def end_request(self, thread_id: int | None = None) -> None:
        """Count a request of ``thread_id`` (default: the calling thread) as finished."""
        with self.lock:
            self._end_locked(threading.get_ident() if thread_id is None else thread_id)

    def get_stats(self) -> dict[str, int]:
        """``total_requests`` (started), ``active_requests`` and ``total_active_requests``
        (both: running now), ``active_threads`` (threads running one now) and
        ``threads_seen`` (threads that ever ran one)."""
        with self.lock:
            active = sum(self.active_requests.values())
            return {
                "total_requests": self.total_requests,
                "active_requests": active,
                "total_active_requests": active,
                "active_threads": len(self.active_requests),
                "threads_seen": len(self.requests_by_thread),
            }


class _AdapterState:
    """The lock, thread-local storage and statistics of one ThreadSafeAdapter instance."""

    __slots__ = (
        "lock",
        "local",
        "stats_lock",
        "tracker",
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
        # Shares stats_lock: one acquisition counts a call in both.
        self.tracker = RequestTracker(self.stats_lock)
        self.active = 0
        self.max_active = 0
        self.errors = 0
        self.total_time = 0.0
        self.by_thread: dict[str, int] = {}
        self.by_method: dict[str, int] = {}
        self.created = time.time()

    def _is_owned(self) -> bool:
        # Lets the thread-safety checker see that acquire_lock() is held.
        owned: bool = self.lock._is_owned()  # type: ignore[attr-defined]
        return owned


def _state_of(adapter: Any) -> _AdapterState:
    """The state of a ThreadSafeAdapter instance, created on first use.

    Created here rather than only in ``__init__`` so that a subclass whose
    ``__init__`` forgets ``super().__init__()`` still gets a lock."""
    d = adapter.__dict__
    st: _AdapterState | None = d.get(_STATE)
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
    shared mutable state (:meth:`acquire_lock`, also ``self._lock``),
    thread-local storage (:meth:`get_thread_local` and friends, over
    ``self._thread_local``) and statistics (:meth:`get_stats_dict`,
    :meth:`get_stats`, the :class:`RequestTracker` at ``self._tracker``,
    :meth:`track_request`). See the module documentation for the lifecycle.

    While a :class:`~snakepit_bridge.thread_safety_checker.ThreadSafetyChecker`
    is enabled, every attribute assignment on an instance is reported to it
    (which costs a little on each assignment; nothing when no checker is on).
    """

    __thread_safe__ = True

    #: The adapter's reentrant lock (what :meth:`acquire_lock` returns).
    _lock: threading.RLock
    #: The thread-local storage behind :meth:`get_thread_local` and friends.
    _thread_local: ThreadLocalStorage
    #: Counts of this instance's ``@thread_safe_method`` calls and :meth:`track_request` blocks.
    _tracker: RequestTracker

    def __init__(self) -> None:
        super().__init__()
        _expose(self, _state_of(self))

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: a subclass whose __init__
        # skipped super().__init__() still gets _lock, _thread_local, _tracker.
        if name in _EXPOSED:
            _expose(self, _state_of(self))
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

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
                "total_requests": st.tracker.total_requests,
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

    def get_stats(self) -> dict[str, Any]:
        """:meth:`get_stats_dict` plus ``tracker`` (``self._tracker.get_stats()``)
        and ``thread_utilization`` (thread name -> calls, as ``requests_by_thread``).

        A subclass may define its own ``get_stats`` (a tool, say) and build
        on :meth:`get_stats_dict`.
        """
        stats = self.get_stats_dict()
        stats["tracker"] = _state_of(self).tracker.get_stats()
        stats["thread_utilization"] = dict(stats["requests_by_thread"])
        return stats

    @contextmanager
    def track_request(self, request_id: str | None = None) -> Iterator[int]:
        """Count the ``with`` block as one request in this instance's statistics.

        ``with self.track_request() as n:`` counts it like a
        ``@thread_safe_method`` call (in ``self._tracker``,
        :meth:`get_stats_dict` under the method name ``request_id`` or
        ``"track_request"``, and for enabled thread-safety checkers) and
        gives its number ``n`` (1, 2, ...). For code that is not a decorated
        method: a helper run from several tools, or a block inside one.
        """
        method = request_id or "track_request"
        token = _begin(self, method)
        failed = False
        try:
            yield token[4]
        except BaseException:
            failed = True
            raise
        finally:
            _end(self, method, token, failed)


# What _begin gives _end: the state, the checkers told, the start time, the
# thread ident and the request's number in the tracker.
_Token = tuple["_AdapterState | None", tuple[Any, ...], float, int, int]

_EXPOSED = frozenset({"_lock", "_thread_local", "_tracker"})


def _expose(adapter: Any, st: _AdapterState) -> None:
    """Publishes the state's lock, storage and tracker as instance attributes
    (written to ``__dict__``: not assignments a checker should see)."""
    d = adapter.__dict__
    d.setdefault("_lock", st.lock)
    d.setdefault("_thread_local", ThreadLocalStorage(st.local))
    d.setdefault("_tracker", st.tracker)


# ------------------------------------------------------------ the decorator


def _begin(adapter: Any, method: str) -> _Token:
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
    ident = number = 0
    if st is not None:
        thread = threading.current_thread()
        ident = threading.get_ident()
        with st.stats_lock:
            number = st.tracker._start_locked(ident)
            st.active += 1
            if st.active > st.max_active:
                st.max_active = st.active
            st.by_thread[thread.name] = st.by_thread.get(thread.name, 0) + 1
            st.by_method[method] = st.by_method.get(method, 0) + 1
    return st, checkers, time.perf_counter(), ident, number


def _end(
    adapter: Any, method: str, token: _Token, failed: bool
) -> None:
    st, checkers, t0, ident, _ = token
    elapsed = time.perf_counter() - t0
    if st is not None:
        with st.stats_lock:
            st.tracker._end_locked(ident)
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
    setattr(wrapper, "__thread_safe__", True)
    return wrapper  # type: ignore[return-value]


# ------------------------------------------------------------ declarations


def validate_thread_safety(adapter_class: Any) -> bool:
    """Whether an adapter class (or instance) declares ``__thread_safe__ = True``.

    The check the thread profile makes before it starts an adapter; the same
    as :func:`is_thread_safe`.
    """
    return is_thread_safe(adapter_class)


def require_thread_safe(func: F) -> F:
    """Decorate a function whose first argument is an adapter: it runs only for thread-safe ones.

    Calling it with an adapter (class or instance) that does not declare
    ``__thread_safe__ = True`` raises
    :class:`~snakepit_bridge.thread_safety_checker.NotThreadSafeError` (a
    ``ValueError`` and a ``ThreadSafetyError``) before ``func`` runs.
    """

    @functools.wraps(func)
    def wrapper(adapter: Any, *args: Any, **kwargs: Any) -> Any:
        _checking.ensure_thread_safe(adapter)
        return func(adapter, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
