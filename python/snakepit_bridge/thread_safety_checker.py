"""Runtime checks for adapters that serve several requests at once.

A :class:`ThreadSafetyChecker` watches adapter methods while they run and
reports what it sees as warnings (or raises :class:`ThreadSafetyError` in
strict mode). It is a development and testing aid: switch it on in tests,
or run a worker with ``--thread-safety-check``, which sends every warning to
the host as a ``snakepit.thread_safety.warning`` telemetry event.

What it detects
---------------
* **Unlocked assignments under concurrency** (kind ``"unlocked_assignment"``).
  An attribute of a :class:`~snakepit_bridge.base_adapter_threaded.ThreadSafeAdapter`
  instance is assigned (``self.counter += 1``, ``self.df = ...``) by a
  thread running one of its tracked methods while at least one other thread
  runs a tracked method on the same instance, and the assigning thread holds
  neither ``acquire_lock()`` nor a lock stored on the instance (a
  ``threading.Lock`` attribute counts when it is locked, an ``RLock`` or
  ``Condition`` when the assigning thread owns it). Tracked methods are
  those decorated with ``@thread_safe_method`` and the tool calls the worker
  wraps in :meth:`ThreadSafetyChecker.track_execution`.
* **Concurrent use of an undeclared adapter** (kind ``"undeclared_adapter"``).
  Two threads run tracked methods on one instance of a class that does not
  declare ``__thread_safe__ = True``.
* **Known thread-unsafe libraries** (kind ``"unsafe_library"``), by
  :meth:`ThreadSafetyChecker.check_library_safety`: pandas, matplotlib and
  sqlite3 imported in the process (the libraries the thread-safe adapter
  guide lists), and, more to the point, an adapter instance that keeps a
  pandas ``DataFrame``/``Series``, a matplotlib ``Figure`` or a
  ``sqlite3.Connection``/``Cursor`` in an attribute, where every thread
  reaches it.

What it cannot detect
---------------------
* In-place mutation: ``self.items.append(x)``, ``self.cache[k] = v`` or
  ``self.df.loc[...] = ...`` change an object without assigning an
  attribute, so they are not seen, locked or not.
* State outside the instance (module globals, class attributes, closures),
  and assignments from threads the checker does not track (threads a tool
  starts itself).
* Locks held elsewhere: an assignment protected by a module-level lock or a
  lock kept in a container is reported as unlocked. A plain ``Lock``
  attribute that another thread holds makes an assignment look locked.
* Races that do not overlap while it watches: it only sees what actually
  runs concurrently, so a clean report after a short test proves little.
  Hammer the adapter from many threads (the guide's hammer test).
* Anything about C extensions: whether a library releases the GIL, or is
  safe without it, is not something it can observe.

Warnings are deduplicated: each (kind, adapter, method, attribute or
library) is reported once per checker until :meth:`~ThreadSafetyChecker.reset`.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

__all__ = [
    "UNSAFE_LIBRARIES",
    "NotThreadSafeError",
    "ThreadSafetyChecker",
    "ThreadSafetyError",
    "ThreadSafetyIssue",
    "ThreadSafetyWarning",
    "active_checkers",
    "check_common_pitfalls",
    "check_thread_safe",
    "disable_checking",
    "enable_checking",
    "ensure_thread_safe",
    "get_global_checker",
    "print_thread_safety_report",
    "require_thread_safe_adapter",
    "validate_adapter_thread_safety",
]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Libraries the thread-safe adapter guide lists as not thread-safe, with its advice.
UNSAFE_LIBRARIES: dict[str, dict[str, str]] = {
    "pandas": {
        "reason": "pandas DataFrame operations are not thread-safe",
        "safe_pattern": "use Polars, or hold acquire_lock() around every DataFrame operation",
    },
    "matplotlib": {
        "reason": "matplotlib (pyplot's global figure state above all) is not thread-safe",
        "safe_pattern": "keep figures in threading.local() (get_thread_local) and avoid pyplot's global state",
    },
    "sqlite3": {
        "reason": "a sqlite3 connection must not be shared between threads",
        "safe_pattern": "open one connection per thread (check_same_thread=False only with your own locking)",
    },
}

# Attribute types that are unsafe to share, by (module prefix, class name) -> library.
_UNSAFE_ATTRIBUTE_TYPES: dict[tuple[str, str], str] = {
    ("pandas", "DataFrame"): "pandas",
    ("pandas", "Series"): "pandas",
    ("matplotlib", "Figure"): "matplotlib",
    ("sqlite3", "Connection"): "sqlite3",
    ("sqlite3", "Cursor"): "sqlite3",
}

# Attribute names the bridge itself manages on adapter instances.
_INTERNAL_PREFIX = "_snakepit_"
_MANAGED_ATTRIBUTES = frozenset({"session_context"})

_LOCK_TYPE = type(threading.Lock())


class ThreadSafetyError(RuntimeError):
    """A thread-safety rule was broken.

    Raised by a checker in strict mode where it would otherwise warn, and
    reported by the worker when an adapter that does not declare
    ``__thread_safe__ = True`` is started in the thread profile.
    """


class NotThreadSafeError(ThreadSafetyError, ValueError):
    """An adapter that does not declare ``__thread_safe__ = True`` was given
    where a thread-safe one is required (:func:`ensure_thread_safe` and the
    decorators built on it). Also a ``ValueError``."""


class ThreadSafetyWarning(RuntimeWarning):
    """The warning category of a non-strict :class:`ThreadSafetyChecker`."""


@dataclass(frozen=True, slots=True)
class ThreadSafetyIssue:
    """One thing a checker found."""

    #: ``"unlocked_assignment"``, ``"undeclared_adapter"`` or ``"unsafe_library"``.
    kind: str
    #: The warning text (what :meth:`ThreadSafetyChecker.get_report` lists under ``warnings``).
    message: str
    #: Qualified name of the adapter class, or ``""``.
    adapter: str = ""
    #: The method that was running, or ``""``.
    method: str = ""
    #: The attribute concerned, or ``""``.
    attribute: str = ""
    #: The library concerned, or ``""``.
    library: str = ""
    #: Threads that ran methods on the instance at that moment (0 when not applicable).
    threads: int = 0
    #: Name of the thread that found it.
    thread: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The issue as a plain dict."""
        return asdict(self)


# ------------------------------------------------------------ registry

# Enabled checkers, as weak references, replaced (never mutated) under the
# lock so that readers on any thread can iterate the tuple they got.
live_checkers: tuple[weakref.ref[ThreadSafetyChecker], ...] = ()
_registry_lock = threading.Lock()


def _register(checker: ThreadSafetyChecker) -> None:
    global live_checkers
    with _registry_lock:
        live = tuple(r for r in live_checkers if r() is not None and r() is not checker)
        live_checkers = (*live, weakref.ref(checker))


def _unregister(checker: ThreadSafetyChecker) -> None:
    global live_checkers
    with _registry_lock:
        live_checkers = tuple(r for r in live_checkers if r() is not None and r() is not checker)


def active_checkers() -> tuple[ThreadSafetyChecker, ...]:
    """The enabled checkers of this process (empty, and cheap, when there are none)."""
    global live_checkers
    refs = live_checkers
    if not refs:
        return ()
    found = tuple(c for r in refs if (c := r()) is not None)
    if len(found) != len(refs):
        with _registry_lock:
            live_checkers = tuple(r for r in live_checkers if r() is not None)
    return found


def _class_name(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _declares_thread_safety(obj: Any) -> bool:
    cls = obj if isinstance(obj, type) else type(obj)
    return getattr(cls, "__thread_safe__", False) is True


def _attributes(instance: Any) -> dict[str, Any]:
    """A snapshot of the instance's attributes (``dict.copy`` is atomic, also without the GIL)."""
    d = getattr(instance, "__dict__", None)
    return d.copy() if isinstance(d, dict) else {}


def _holds_a_lock(instance: Any) -> bool:
    """Whether the current thread holds the adapter's lock or a lock stored on the instance."""
    for value in _attributes(instance).values():
        owned = getattr(value, "_is_owned", None)
        if owned is not None and callable(owned):
            try:
                if owned():
                    return True
            except (TypeError, RuntimeError):
                pass
        elif isinstance(value, _LOCK_TYPE) and value.locked():
            return True
    return False


class _Activity:
    """Threads running tracked methods on one adapter instance."""

    __slots__ = ("adapter", "declared", "threads")

    def __init__(self, adapter: str, declared: bool) -> None:
        self.adapter = adapter
        self.declared = declared
        # thread ident -> stack of method names running on that thread
        self.threads: dict[int, list[str]] = {}


class _MethodStats:
    __slots__ = ("calls", "threads", "running", "max_concurrency", "total_time")

    def __init__(self) -> None:
        self.calls = 0
        self.threads: set[str] = set()
        self.running = 0
        self.max_concurrency = 0
        self.total_time = 0.0


class _ThreadStats:
    __slots__ = ("calls", "total_time", "methods")

    def __init__(self) -> None:
        self.calls = 0
        self.total_time = 0.0
        self.methods: set[str] = set()


class ThreadSafetyChecker:
    """Watches adapter methods as they run and reports thread-safety problems.

    ``enabled`` checkers observe every ``@thread_safe_method`` call and every
    attribute assignment on
    :class:`~snakepit_bridge.base_adapter_threaded.ThreadSafeAdapter`
    instances in the process, from the moment they are created (or
    :meth:`enable`-d) until :meth:`disable`; other code can be tracked with
    :meth:`track_execution`. ``strict_mode`` raises :class:`ThreadSafetyError`
    where a warning would be issued (inside the offending method, before the
    offending assignment happens). Otherwise each new warning is logged, issued
    as a :class:`ThreadSafetyWarning` and passed to ``on_warning`` if given.
    See the module documentation for what is and is not detected.

    Used as a context manager it starts from a clean slate on entry and stops
    observing on exit.
    """

    def __init__(
        self,
        enabled: bool = True,
        strict_mode: bool = False,
        *,
        on_warning: Callable[[ThreadSafetyIssue], Any] | None = None,
        issue_python_warnings: bool = True,
    ) -> None:
        self.strict_mode = strict_mode
        self.on_warning = on_warning
        self.issue_python_warnings = issue_python_warnings
        self._lock = threading.Lock()
        self._enabled = False
        self._activity: dict[int, _Activity] = {}
        self._methods: dict[str, _MethodStats] = {}
        self._threads: dict[str, _ThreadStats] = {}
        self._issues: list[ThreadSafetyIssue] = []
        self._keys: set[tuple[str, ...]] = set()
        self.start_time = time.time()
        if enabled:
            self.enable()

    # ------------------------------------------------------------ switching

    @property
    def enabled(self) -> bool:
        """Whether the checker is observing."""
        return self._enabled

    def enable(self) -> None:
        """Start observing (``enabled=True`` at creation does this)."""
        self._enabled = True
        _register(self)

    def disable(self) -> None:
        """Stop observing; what was recorded stays in the report."""
        self._enabled = False
        _unregister(self)

    def reset(self) -> None:
        """Forget everything recorded so far, warnings included."""
        with self._lock:
            self._methods.clear()
            self._threads.clear()
            self._issues.clear()
            self._keys.clear()
            self.start_time = time.time()

    def __enter__(self) -> ThreadSafetyChecker:
        self.reset()
        self.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disable()

    # ------------------------------------------------------------- tracking

    def track_execution(self, method_name: str | Callable[..., Any], *, adapter: Any = None) -> Any:
        """Track one execution of ``method_name`` on ``adapter`` (optional).

        As a context manager::

            with checker.track_execution("predict", adapter=self):
                ...

        records which thread ran the method, for how long and what else ran
        on the same instance meanwhile; with an ``adapter``, concurrent runs
        on one instance of a class without ``__thread_safe__ = True`` are
        reported, and attribute assignments made meanwhile are checked. Given
        a function instead of a name it is a decorator: every call is
        tracked, with the first argument as the adapter when it is an object
        with attributes (a method's ``self``).
        """
        if callable(method_name) and not isinstance(method_name, str):
            return self._decorate(method_name)
        return self._tracking(method_name, adapter)

    def _decorate(self, func: F) -> F:
        name = getattr(func, "__qualname__", getattr(func, "__name__", "function"))

        def target(args: tuple[Any, ...]) -> Any:
            return args[0] if args and hasattr(args[0], "__dict__") else None

        if inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._tracking(name, target(args)):
                    return (yield from func(*args, **kwargs))

            return gen_wrapper  # type: ignore[return-value]

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._tracking(name, target(args)):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._tracking(name, target(args)):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    @contextmanager
    def _tracking(self, method: str, adapter: Any) -> Iterator[None]:
        if not self._enabled:
            yield
            return
        t0 = time.perf_counter()
        self.enter(method, adapter)
        try:
            yield
        finally:
            self.exit(method, adapter, time.perf_counter() - t0)

    def enter(self, method: str, adapter: Any = None) -> None:
        """Record that the current thread starts running ``method`` (on ``adapter``).

        Low-level half of :meth:`track_execution`: every call that returns
        must be paired with :meth:`exit` on the same thread. In strict mode
        it may raise :class:`ThreadSafetyError`, having recorded nothing.
        """
        thread = threading.current_thread()
        ident = thread.ident or 0
        issue: ThreadSafetyIssue | None = None
        with self._lock:
            ms = self._methods.get(method)
            if ms is None:
                ms = self._methods[method] = _MethodStats()
            ms.calls += 1
            ms.threads.add(thread.name)
            ms.running += 1
            if ms.running > ms.max_concurrency:
                ms.max_concurrency = ms.running
            ts = self._threads.get(thread.name)
            if ts is None:
                ts = self._threads[thread.name] = _ThreadStats()
            ts.calls += 1
            ts.methods.add(method)
            if adapter is not None:
                act = self._activity.get(id(adapter))
                if act is None:
                    act = self._activity[id(adapter)] = _Activity(
                        _class_name(adapter), _declares_thread_safety(adapter)
                    )
                act.threads.setdefault(ident, []).append(method)
                n = len(act.threads)
                if n > 1 and not act.declared:
                    others = sorted({m for t, s in act.threads.items() if t != ident for m in s})
                    issue = self._new_issue_locked(
                        ("undeclared_adapter", act.adapter),
                        kind="undeclared_adapter",
                        message=(
                            f"\u26a0\ufe0f Adapter {act.adapter} does not declare thread safety: "
                            f"method {method!r} ran on one instance while {n - 1} other thread(s) "
                            f"ran {', '.join(repr(m) for m in others)} on it. Set __thread_safe__ = True "
                            "on the class once it is safe to serve requests concurrently, or use the "
                            "process profile."
                        ),
                        adapter=act.adapter,
                        method=method,
                        threads=n,
                        thread=thread.name,
                    )
        if issue is not None:
            try:
                self._report(issue)
            except ThreadSafetyError:
                self.exit(method, adapter)
                raise

    def exit(self, method: str, adapter: Any = None, duration: float = 0.0) -> None:
        """Record that the current thread finished running ``method`` (see :meth:`enter`)."""
        thread = threading.current_thread()
        ident = thread.ident or 0
        with self._lock:
            ms = self._methods.get(method)
            if ms is not None:
                ms.running = max(0, ms.running - 1)
                ms.total_time += duration
            ts = self._threads.get(thread.name)
            if ts is not None:
                ts.total_time += duration
            if adapter is not None:
                key = id(adapter)
                act = self._activity.get(key)
                if act is not None:
                    stack = act.threads.get(ident)
                    if stack:
                        stack.pop()
                        if not stack:
                            del act.threads[ident]
                    if not act.threads:
                        del self._activity[key]

    def note_assignment(self, adapter: Any, attribute: str) -> None:
        """Check an assignment of ``adapter.attribute`` by the current thread.

        Called by :class:`~snakepit_bridge.base_adapter_threaded.ThreadSafeAdapter`
        before every attribute assignment while a checker is enabled.
        """
        if attribute.startswith(_INTERNAL_PREFIX) or attribute in _MANAGED_ATTRIBUTES:
            return
        ident = threading.get_ident()
        with self._lock:
            act = self._activity.get(id(adapter))
            if act is None or len(act.threads) < 2:
                return
            stack = act.threads.get(ident)
            if not stack:
                return
            n = len(act.threads)
            method = stack[-1]
        # Outside our lock: looking at the adapter's locks takes no lock of ours.
        if _holds_a_lock(adapter):
            return
        thread = threading.current_thread().name
        with self._lock:
            issue = self._new_issue_locked(
                ("unlocked_assignment", act.adapter, method, attribute),
                kind="unlocked_assignment",
                message=(
                    f"\u26a0\ufe0f THREAD SAFETY: Method {method!r} accessed by {n} different threads "
                    f"concurrently and it assigned self.{attribute} of {act.adapter} without holding "
                    "acquire_lock() (or a lock stored on the adapter). Shared mutable state must be "
                    "changed under a lock."
                ),
                adapter=act.adapter,
                method=method,
                attribute=attribute,
                threads=n,
                thread=thread,
            )
        if issue is not None:
            self._report(issue)

    # ------------------------------------------------------------ libraries

    def check_library_safety(
        self, imported_modules: Iterable[str] | None = None, *, adapter: Any = None
    ) -> list[str]:
        """Warn about known thread-unsafe libraries; return the new warnings' messages.

        ``imported_modules`` (default: the modules imported in this process,
        ``sys.modules``) is searched for pandas, matplotlib and sqlite3. With
        an ``adapter``, its attributes are searched for shared objects of those
        libraries (a ``DataFrame``, a ``Figure``, a sqlite3 ``Connection``).
        """
        if not self._enabled:
            return []
        found: list[ThreadSafetyIssue] = []
        if imported_modules is None:
            present = [lib for lib in UNSAFE_LIBRARIES if lib in sys.modules]
        else:
            tops = {m.partition(".")[0] for m in imported_modules}
            present = [lib for lib in UNSAFE_LIBRARIES if lib in tops]
        thread = threading.current_thread().name
        attrs: list[tuple[str, str, str]] = []
        if adapter is not None:
            for name, value in _attributes(adapter).items():
                t = type(value)
                lib = _UNSAFE_ATTRIBUTE_TYPES.get((t.__module__.partition(".")[0], t.__name__))
                if lib is not None:
                    attrs.append((name, lib, t.__name__))
        with self._lock:
            for lib in present:
                info = UNSAFE_LIBRARIES[lib]
                issue = self._new_issue_locked(
                    ("unsafe_library", lib),
                    kind="unsafe_library",
                    message=(
                        f"\u26a0\ufe0f THREAD SAFETY: Unsafe library {lib!r} detected. "
                        f"Reason: {info['reason']}. Safe pattern: {info['safe_pattern']}."
                    ),
                    library=lib,
                    thread=thread,
                )
                if issue is not None:
                    found.append(issue)
            if attrs:
                owner = _class_name(adapter)
                for name, lib, type_name in attrs:
                    info = UNSAFE_LIBRARIES[lib]
                    issue = self._new_issue_locked(
                        ("unsafe_library", owner, name),
                        kind="unsafe_library",
                        message=(
                            f"\u26a0\ufe0f THREAD SAFETY: Unsafe library {lib!r} detected: adapter {owner} "
                            f"keeps a {lib} {type_name} in self.{name}, which every thread reaches. "
                            f"Reason: {info['reason']}. Safe pattern: {info['safe_pattern']}."
                        ),
                        adapter=owner,
                        attribute=name,
                        library=lib,
                        thread=thread,
                    )
                    if issue is not None:
                        found.append(issue)
        for issue in found:
            self._report(issue)
        return [i.message for i in found]

    # -------------------------------------------------------------- reports

    def _new_issue_locked(self, key: tuple[str, ...], **fields: Any) -> ThreadSafetyIssue | None:
        if key in self._keys:
            return None
        self._keys.add(key)
        issue = ThreadSafetyIssue(**fields)
        self._issues.append(issue)
        return issue

    def _report(self, issue: ThreadSafetyIssue) -> None:
        logger.warning("%s", issue.message)
        callback = self.on_warning
        if callback is not None:
            try:
                callback(issue)
            except Exception:  # a broken callback must not break the checked code
                logger.exception("thread safety checker: on_warning callback raised")
        if self.strict_mode:
            raise ThreadSafetyError(issue.message)
        if self.issue_python_warnings:
            warnings.warn(issue.message, ThreadSafetyWarning, stacklevel=4)

    @property
    def issues(self) -> list[ThreadSafetyIssue]:
        """The issues found so far, oldest first."""
        with self._lock:
            return list(self._issues)

    def get_report(self) -> dict[str, Any]:
        """What the checker saw, as a dict.

        Keys: ``warnings`` (the messages, oldest first), ``issues`` (the same
        as dicts: ``kind message adapter method attribute library threads
        thread``), ``warnings_issued`` (their number), ``concurrent_accesses``
        (method -> the most threads that ran it at the same moment, for
        methods that ran on two or more at once), ``methods`` (method ->
        ``calls threads max_concurrency total_time``), ``thread_utilization``
        (thread name -> ``calls total_time methods avg_time_per_call``),
        ``total_methods_tracked``, ``total_threads_seen``, ``total_runtime``
        (seconds since creation or reset), ``enabled``, ``strict_mode`` and
        ``recommendations`` (sentences).
        """
        with self._lock:
            methods = {
                name: {
                    "calls": ms.calls,
                    "threads": len(ms.threads),
                    "max_concurrency": ms.max_concurrency,
                    "total_time": ms.total_time,
                }
                for name, ms in self._methods.items()
            }
            threads = {
                name: {
                    "calls": ts.calls,
                    "total_time": ts.total_time,
                    "methods": sorted(ts.methods),
                    "avg_time_per_call": ts.total_time / ts.calls if ts.calls else 0.0,
                }
                for name, ts in self._threads.items()
            }
            issues = list(self._issues)
            runtime = time.time() - self.start_time
        concurrent = {m: s["max_concurrency"] for m, s in methods.items() if s["max_concurrency"] > 1}
        recommendations: list[str] = []
        if issues:
            recommendations.append(
                f"{len(issues)} thread-safety warning(s): see 'warnings'. Guard shared mutable state "
                "with acquire_lock(), keep per-thread state in get_thread_local(), and keep shared "
                "resources read-only."
            )
        if methods and len(threads) < 2:
            recommendations.append(
                "Only one thread was seen: hammer the adapter from many threads (e.g. "
                "ThreadPoolExecutor(max_workers=20)) so that races can show."
            )
        if methods and not concurrent:
            recommendations.append("No method ran on two threads at the same moment, so little was checked.")
        if not issues:
            recommendations.append("No thread-safety issues detected.")
        return {
            "enabled": self._enabled,
            "strict_mode": self.strict_mode,
            "total_runtime": runtime,
            "warnings": [i.message for i in issues],
            "issues": [i.as_dict() for i in issues],
            "warnings_issued": len(issues),
            "concurrent_accesses": concurrent,
            "methods": methods,
            "total_methods_tracked": len(methods),
            "total_threads_seen": len(threads),
            "thread_utilization": threads,
            "recommendations": recommendations,
        }

    def __repr__(self) -> str:
        return (
            f"ThreadSafetyChecker(enabled={self._enabled}, strict_mode={self.strict_mode}, "
            f"warnings={len(self._issues)})"
        )


# ------------------------------------------------------- the global checker

# The process's global checker: created disabled, switched by enable_checking().
_global_checker = ThreadSafetyChecker(enabled=False)


def get_global_checker() -> ThreadSafetyChecker:
    """The process's global checker (disabled until :func:`enable_checking`).

    It is always the same object; :func:`check_thread_safe` reports to it.
    """
    return _global_checker


def enable_checking(strict_mode: bool = False) -> ThreadSafetyChecker:
    """Start the global checker afresh (its record reset) and return it.

    From now on it observes every ``@thread_safe_method`` call, every
    :func:`check_thread_safe` function and every ``ThreadSafeAdapter``
    attribute assignment in the process, like any enabled checker;
    ``strict_mode`` raises :class:`ThreadSafetyError` instead of warning.
    """
    checker = _global_checker
    checker.strict_mode = strict_mode
    checker.reset()
    checker.enable()
    logger.info("thread safety checking enabled%s", " (strict mode)" if strict_mode else "")
    return checker


def disable_checking() -> None:
    """Stop the global checker; its report keeps what it recorded."""
    _global_checker.disable()
    logger.info("thread safety checking disabled")


def check_thread_safe(func: F) -> F:
    """Decorate a function (or method) so that the global checker tracks every call.

    While :func:`enable_checking` is in force each call is recorded as with
    :meth:`ThreadSafetyChecker.track_execution` (a method's ``self`` is the
    adapter); otherwise the call just runs. Works on plain, generator and
    ``async`` functions.
    """
    return _global_checker.track_execution(func)  # type: ignore[no-any-return]


def ensure_thread_safe(adapter: Any) -> None:
    """Raise :class:`NotThreadSafeError` unless ``adapter`` (a class or an
    instance) declares ``__thread_safe__ = True``."""
    if _declares_thread_safety(adapter):
        return
    from .base_adapter import BaseAdapter

    cls = adapter if isinstance(adapter, type) else type(adapter)
    owner = next((k for k in cls.__mro__ if "__thread_safe__" in vars(k)), None)
    if owner is None or owner is BaseAdapter:
        how = "does not declare thread safety"
    else:
        how = f"declares __thread_safe__ = {vars(owner)['__thread_safe__']!r}"
    raise NotThreadSafeError(
        f"adapter {cls.__qualname__} {how}: set __thread_safe__ = True on a class that is safe "
        "for concurrent requests, or use the process profile"
    )


def require_thread_safe_adapter(func: F) -> F:
    """Decorate a function whose first argument is an adapter: it runs only for thread-safe ones
    (else :class:`NotThreadSafeError`, before ``func`` runs)."""

    @functools.wraps(func)
    def wrapper(adapter: Any, *args: Any, **kwargs: Any) -> Any:
        ensure_thread_safe(adapter)
        return func(adapter, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def validate_adapter_thread_safety(adapter_class: Any) -> bool:
    """Whether an adapter class (or instance) declares ``__thread_safe__ = True``.

    While the global checker is enabled in strict mode, an undeclared class
    raises :class:`NotThreadSafeError` instead of returning False.
    """
    if _declares_thread_safety(adapter_class):
        return True
    if _global_checker.enabled and _global_checker.strict_mode:
        ensure_thread_safe(adapter_class)
    return False


def check_common_pitfalls(adapter: Any) -> list[str]:
    """Sentences about what looks unsafe in an adapter instance, without running it.

    Looks for: no ``__thread_safe__ = True`` declaration; public attributes
    holding a mutable ``list``, ``dict`` or ``set`` on an instance that has
    no lock (neither ``acquire_lock()`` nor a lock attribute); objects of
    libraries known not to be thread-safe kept on the instance (a pandas
    ``DataFrame``, a matplotlib ``Figure``, a sqlite3 connection). An empty
    list means none of these was found, not that the adapter is safe.
    """
    found: list[str] = []
    name = _class_name(adapter)
    if not _declares_thread_safety(adapter):
        found.append(f"adapter {name} does not declare __thread_safe__ = True")
    attrs = _attributes(adapter)
    has_lock = callable(getattr(adapter, "acquire_lock", None)) or any(
        callable(getattr(v, "_is_owned", None)) or isinstance(v, _LOCK_TYPE) for v in attrs.values()
    )
    if not has_lock:
        mutable = sorted(k for k, v in attrs.items() if not k.startswith("_") and isinstance(v, (list, dict, set)))
        if mutable:
            found.append(
                f"adapter {name} keeps mutable shared state ({', '.join(mutable)}) and has no lock: "
                "guard it with a lock, or derive from ThreadSafeAdapter and use acquire_lock()"
            )
    for attr, value in sorted(attrs.items()):
        t = type(value)
        lib = _UNSAFE_ATTRIBUTE_TYPES.get((t.__module__.partition(".")[0], t.__name__))
        if lib is not None:
            found.append(
                f"adapter {name} keeps a {lib} {t.__name__} in self.{attr}, which every thread reaches: "
                f"{UNSAFE_LIBRARIES[lib]['safe_pattern']}"
            )
    return found


def print_thread_safety_report(file: Any = None) -> None:
    """Print the global checker's report as text (to ``file``, default stdout)."""
    report = _global_checker.get_report()
    out = file if file is not None else sys.stdout
    lines = [
        "Thread safety report",
        f"  enabled: {report['enabled']}  strict mode: {report['strict_mode']}",
        f"  runtime: {report['total_runtime']:.2f} s  threads seen: {report['total_threads_seen']}  "
        f"methods tracked: {report['total_methods_tracked']}  warnings: {report['warnings_issued']}",
    ]
    if report["concurrent_accesses"]:
        lines.append("  concurrent accesses (most threads at once):")
        lines += [f"    {m}: {n}" for m, n in sorted(report["concurrent_accesses"].items())]
    if report["warnings"]:
        lines.append("  warnings:")
        lines += [f"    {w}" for w in report["warnings"]]
    lines.append("  recommendations:")
    lines += [f"    {r}" for r in report["recommendations"]]
    print("\n".join(lines), file=out)
