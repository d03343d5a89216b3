"""Runs one request: the adapter instance's lifecycle, the tool, its stream.

The ``Runner`` holds what running a tool needs about the adapter class (its
hooks, whether one instance is shared, the thread-safety checker) and turns a
``Request`` and its plan into the one final reply frame: instance,
``initialize()``, the bound call, ``cleanup()``; generators become streamed
chunks under the caller's credit; FFI operations run with no instance; release
hooks run off the reading thread; a batch (``Execute.batch``) runs as one
call of its batched tool, answered with one item per call. The executor
threads of the worker (``_worker.py``) call ``run``; whoever claims the
request from the shared registry sends its final frame. ``warmup`` runs the
adapter's warm-up hook before the worker says Hello.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any, NoReturn

from . import _ffi, _numpy, _shm, telemetry
from ._binding import NO_KWARGS, BadArguments, FfiPlan, Plan, ToolPlan, class_name
from ._codec import EncodingError, dec, decode_values
from ._config import THREAD_SAFETY_WARNING_EVENT
from ._context import current_request
from ._failures import exception_error, exception_frame, failure_frame, format_tb
from ._frames import TooLarge, error_message, error_reply
from ._frames import batch_result as batch_result_frame
from ._frames import chunk as chunk_frame
from ._frames import error as error_frame
from ._frames import result as result_frame
from ._proto import snakepit_pb2 as pb
from ._request import Cancelled, HookScope, Request
from ._stream_batch import BATCH_BYTES, BOUND_S, RUN_ITEM_MAX, Flusher, Held, chunk_prefix, run_item, scalar_chunk
from ._stream_chunk import StreamChunk
from .base_adapter import OWN_CONTEXT, BaseAdapter, RequestScopedContext
from .batching import BatchResultMismatch, split_results, stack_arguments
from .errors import DrainDeadlineExceeded, RefNotFoundError, SessionMismatchError
from .session_context import SessionContext
from .thread_safety_checker import ThreadSafetyChecker, ThreadSafetyIssue

__all__: list[str] = []

# How long the worker waits for the shared instance's cleanup() when it exits.
_CLEANUP_SECONDS = 5.0
EXIT_OK = 0


class _StreamEnd:
    """Marks the end of a generator in the stream loop."""


_END = _StreamEnd()


def _bind_failure(e: Exception) -> pb.Error:
    """The error of a request (or of one call of a batch) whose arguments did
    not decode or bind (`plan.bind` refused them with `e`)."""
    if isinstance(e, BadArguments):
        return error_message(pb.ERROR_KIND_BAD_ARGUMENTS, str(e), parameter=e.parameter, details=e.details or None)
    if isinstance(e, EncodingError):
        return error_message(pb.ERROR_KIND_ENCODING, f"could not decode arguments: {e}")
    if isinstance(e, (RefNotFoundError, SessionMismatchError)):
        return exception_error(e)
    # A value the codec could not make sense of (a decoder's own error).
    return error_message(pb.ERROR_KIND_ENCODING, f"could not decode arguments: {type(e).__name__}: {e}")


# Types of yielded items that are the chunk's data as they are: never a
# StreamChunk, an envelope dict, or an object with `data` and `is_final`.
_PLAIN_ITEMS = frozenset({int, float, str, bool, bytes, type(None), list, tuple})

_MISSING = object()


def _unwrap_item(item: Any) -> tuple[Any, bool, Any]:
    """(data, is_final, metadata) of one yielded item.

    A :class:`StreamChunk` (or subclass), a dict of exactly ``data`` and
    ``is_final`` (and optionally ``metadata``), or any object with ``data``
    and ``is_final`` attributes (an adapter's own chunk class; its
    ``metadata`` attribute is used when it is a dict) controls its chunk;
    anything else is the data."""
    t = type(item)
    if t is StreamChunk:
        return item.data, item.is_final, item.metadata
    if t is dict:
        if "data" in item and "is_final" in item:
            keys = item.keys()
            if len(keys) == 2 or (len(keys) == 3 and "metadata" in item):
                return item["data"], bool(item["is_final"]), item.get("metadata")
        return item, False, None
    if isinstance(item, StreamChunk):
        return item.data, item.is_final, item.metadata
    final = getattr(item, "is_final", _MISSING)
    if final is not _MISSING:
        data = getattr(item, "data", _MISSING)
        if data is not _MISSING:
            meta = getattr(item, "metadata", None)
            return data, bool(final), meta if type(meta) is dict else None
    return item, False, None


def _size_floor(data: Any) -> int:
    """A lower bound of the bytes `data` takes as one item of a list value:
    at least 2 per value, a str's or bytes' length, the same for the items of
    a container one level down. Bounds what a generator drained into a list
    may collect before its reply is certain to exceed the frame limit."""
    t = type(data)
    if t is str or t is bytes or t is bytearray:
        return len(data) + 2
    if t is list or t is tuple or t is set or t is frozenset:
        n = 2
        for x in data:
            tx = type(x)
            n += len(x) + 2 if (tx is str or tx is bytes) else 2
        return n
    if t is dict:
        n = 2
        for k, v in data.items():
            n += (len(k) + 2 if type(k) is str else 2) + (len(v) + 2 if (type(v) is str or type(v) is bytes) else 2)
        return n
    return 2


def _if_pending(task: asyncio.Task[Any], on_wait: Callable[[], None]) -> None:
    if not task.done():
        on_wait()


def _complete(r: Any) -> None:
    """Runs `r`, what a hook returned, to its end if it is awaitable (an
    async hook's coroutine): outside any request, on a loop of its own."""
    if not inspect.isawaitable(r):
        return
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(r)
    finally:
        loop.close()


class Runner:
    """Runs requests of one adapter class; shared by every executor thread."""

    def __init__(
        self,
        *,
        cls: type,
        plans: dict[str, Plan],
        registry: dict[int, Request],
        limit: int,
        sock: socket.socket,
        wlock: threading.Lock,
        send: Callable[[bytes], None],
        finish: Callable[[int, str], NoReturn],
        ffi: _ffi.FfiRuntime,
        host: Any,
        profile: str,
        thread_safety_check: bool,
        unserializable: str = "marker",
    ) -> None:
        self.cls = cls
        self.plans = plans
        # Every in-flight request until its final reply is claimed (shared with the reader).
        self.registry = registry
        self.limit = limit
        # Streams send their chunks themselves, under the worker's write lock.
        self.sock = sock
        self.wlock = wlock
        # Writes what streams hold while their generators block.
        self.flusher = Flusher()
        # The frames each running stream holds, by request id.
        self.held: dict[int, Held] = {}
        self.send = send
        self.finish = finish
        self.ffi = ffi
        # The link to the host given to every SessionContext (``_host_calls.HostCalls``).
        self.host = host
        self.profile = profile
        # What becomes of tool results' objects without a wire form (``serialization``).
        self.unserializable = unserializable
        # Whether the worker has shared-memory arenas (``_shm``).
        self.shm = _shm.enabled()
        self.has_set_ctx = callable(getattr(cls, "set_session_context", None))
        self.initialize = getattr(cls, "initialize", None) if callable(getattr(cls, "initialize", None)) else None
        self.cleanup = getattr(cls, "cleanup", None) if callable(getattr(cls, "cleanup", None)) else None
        et = getattr(cls, "execute_tool", None)
        self.dynamic = callable(et) and et is not BaseAdapter.execute_tool
        # The instance serving every request (thread profile), made by
        # start_adapter(); None for an instance per request.
        self.shared: Any = None
        # Whether `session_context` of the class is request-scoped (BaseAdapter's),
        # and whether, set_session_context being BaseAdapter's too, a new
        # instance's context may be stored directly (what that method does,
        # minus two Python calls on the hot path).
        self.scoped_ctx = isinstance(inspect.getattr_static(cls, "session_context", None), RequestScopedContext)
        self.ctx_direct = self.scoped_ctx and getattr(cls, "set_session_context", None) is BaseAdapter.set_session_context
        self.checker: ThreadSafetyChecker | None = None
        if thread_safety_check:
            self.checker = ThreadSafetyChecker(
                enabled=True, strict_mode=False, on_warning=self._on_safety_warning, issue_python_warnings=False
            )

    # ------------------------------------------------------------- start/exit

    def start_adapter(self) -> None:
        """Creates and initializes the shared instance (thread profile), before the Hello."""
        if self.profile == "thread":
            inst = self.cls()
            self.shared = inst
            if self.initialize is not None:
                _complete(inst.initialize())
        if self.checker is not None:
            self.checker.check_library_safety(adapter=self.shared)

    def cleanup_shared(self) -> None:
        """Runs the shared instance's cleanup(), waiting at most _CLEANUP_SECONDS."""
        inst = self.shared
        if inst is None or self.cleanup is None:
            return
        done = threading.Event()

        def clean() -> None:
            try:
                _complete(inst.cleanup())
            except Exception as e:
                sys.stderr.write(f"snakepit worker: cleanup() raised:\n{format_tb(e)}")
            finally:
                done.set()

        threading.Thread(target=clean, name="snakepit-cleanup", daemon=True).start()
        if not done.wait(_CLEANUP_SECONDS):
            sys.stderr.write(f"snakepit worker: cleanup() did not return within {_CLEANUP_SECONDS} s\n")

    def _on_safety_warning(self, issue: ThreadSafetyIssue) -> None:
        metadata: dict[str, Any] = {
            "adapter": issue.adapter or class_name(self.cls),
            "method": issue.method,
            "message": issue.message,
            "kind": issue.kind,
        }
        if issue.attribute:
            metadata["attribute"] = issue.attribute
        if issue.library:
            metadata["library"] = issue.library
        telemetry.emit(THREAD_SAFETY_WARNING_EVENT, {"threads": issue.threads}, metadata)

    # ------------------------------------------------------------------ hooks

    def call_hook(self, fid: int, name: str, session_id: str, *args: Any) -> bytes:
        """Runs adapter hook `name` if the adapter has one; returns the reply
        to exchange `fid`: a null Result, or the Error the hook raised.

        A static or class method is called as it is; a plain method on a new
        instance whose session context has the session id (and no host), or
        on the shared instance in the thread profile."""
        raw = inspect.getattr_static(self.cls, name, None)
        if raw is None:
            return result_frame(fid, None, self.limit)
        token = None
        try:
            if inspect.isfunction(raw):
                # The shared instance holds the state the hook releases.
                inst, token = self._hook_instance(SessionContext(session_id))
                hook = getattr(inst, name)
            else:
                hook = getattr(self.cls, name)
            _complete(hook(session_id, *args))
        except BaseException as e:  # SystemExit and the like from the hook too: the worker serves on
            sys.stderr.write(f"snakepit worker: {name} hook raised:\n{format_tb(e)}")
            return exception_frame(fid, e)
        finally:
            if token is not None:
                current_request.reset(token)
        return result_frame(fid, None, self.limit)

    def _hook_instance(self, ctx: SessionContext) -> tuple[Any, Any]:
        """The instance a hook that is a plain method runs on, its session
        context `ctx`, and the token resetting the request scope that shows
        the shared instance `ctx` (None for a new instance): the shared
        instance in the thread profile, else a new one."""
        shared = self.shared
        if shared is None:
            inst = self.cls()
            if self.has_set_ctx:
                inst.set_session_context(ctx)
            else:
                inst.session_context = ctx
            return inst, None
        token = current_request.set(HookScope(shared, ctx))
        if self.has_set_ctx:
            try:
                shared.set_session_context(ctx)
            except BaseException:
                current_request.reset(token)
                raise
        return shared, token

    def warmup(self) -> None:
        """Runs the adapter's ``warmup()``, if it has one, once, after
        ``start_adapter`` and before the Hello (so the worker is ready only
        once it returned): a plain method on the shared instance (thread
        profile), or else on a new instance that gets a session context of no
        session, ``initialize()`` before and ``cleanup()`` after it, as a
        request's instance does; a static or class method as it is. Sync or
        async. Raises what it (or the lifecycle of its instance) raised."""
        hook = getattr(self.cls, "warmup", None)
        if not callable(hook):
            return
        if not inspect.isfunction(inspect.getattr_static(self.cls, "warmup")):
            _complete(hook())
            return
        inst, token = self._hook_instance(SessionContext(""))
        if token is not None:
            try:
                _complete(inst.warmup())
            finally:
                current_request.reset(token)
            return
        error: BaseException | None = None
        try:
            if self.initialize is not None:
                _complete(inst.initialize())
            _complete(inst.warmup())
        except BaseException as e:  # cleanup() runs all the same, as after a tool
            error = e
        if self.cleanup is not None:
            try:
                _complete(inst.cleanup())
            except BaseException as e:
                if error is None:
                    error = e
                else:
                    sys.stderr.write(f"snakepit worker: cleanup() raised after warmup() failed:\n{format_tb(e)}")
        if error is not None:
            raise error

    def release_hook(self, fid: int, name: str, *args: Any) -> None:
        """Runs an adapter's release hook on a thread of its own, so that a
        slow hook never holds up the socket (Ping, Cancel, new work); the
        reply goes out when the hook returns. Releases are rare; a thread each
        costs less than the machinery to share one."""
        if getattr(self.cls, name, None) is None:
            self.send(self.call_hook(fid, name, *args))
            return

        def run() -> None:
            self.send(self.call_hook(fid, name, *args))

        threading.Thread(target=run, name=f"snakepit-{name}", daemon=True).start()

    # -------------------------------------------------------------- requests

    def claim(self, st: Request) -> bool:
        """Takes `st` from the registry: True for the one caller that may send its final frame."""
        return self.registry.pop(st.id, None) is not None

    def _run_coro(
        self, st: Request, coro: Any, loop: asyncio.AbstractEventLoop, on_wait: Callable[[], None] | None = None
    ) -> Any:
        """Runs `coro` as the request's task; `on_wait` is called if it
        awaits something not ready at once (its first step did not end it)."""
        task = loop.create_task(coro)
        st.loop = loop
        st.task = task
        if st.cancelled:
            task.cancel()
        if on_wait is not None:
            # Runs right after the task's first step, in the same pass of the loop.
            loop.call_soon(_if_pending, task, on_wait)
        try:
            return loop.run_until_complete(task)
        finally:
            st.task = None

    def escaped(self, st: Request, e: BaseException) -> bytes | None:
        """The reply of a request whose run raised past every handler of its
        own: it fails, and the thread lives on to serve the next."""
        sys.stderr.write(f"snakepit worker: request {st.id} ({st.execute.tool!r}) failed in the worker:\n{format_tb(e)}")
        if not self.claim(st):
            return None
        try:
            return failure_frame(st.id, e)
        except Exception:
            return error_frame(st.id, pb.ERROR_KIND_PYTHON_EXCEPTION, f"{type(e).__name__} in the worker")

    def run(self, st: Request, plan: Plan | None, loop: asyncio.AbstractEventLoop) -> bytes | None:
        """Run one request; return its final reply frame, or None if someone else answered."""
        if st.cancelled:
            if self.shm:
                # Never decoded: the host's regions it named go back.
                _shm.release_undecoded(_shm.execute_values(st.execute))
            return None
        fid = st.id
        ex = st.execute
        if plan is None:
            if self.dynamic and not ex.tool.startswith(_ffi.FFI_PREFIX):
                if ex.batch:
                    return self._run_batch(st, None, loop)
                return self._run_dynamic(st, loop)
            if self.shm:
                _shm.release_undecoded(_shm.execute_values(ex))
            if not self.claim(st):
                return None
            available = ", ".join(sorted(n for n, p in self.plans.items() if type(p) is ToolPlan)) or "none"
            return error_frame(
                fid,
                pb.ERROR_KIND_UNKNOWN_TOOL,
                f"unknown tool {ex.tool!r}; available tools: {available}",
                details={"tool": ex.tool, "available": available},
            )
        if ex.batch or plan.batch is not None:
            return self._run_batch(st, plan, loop)
        # The request is current from here on: refs in its arguments belong
        # to its session. _lifecycle (or _run_ffi) resets it.
        scope_token = current_request.set(st)
        if type(plan) is FfiPlan:
            return self._run_ffi(st, plan, loop, scope_token)
        timing = [time.perf_counter_ns(), 0, 0] if "traceparent" in ex.metadata else None
        shm = self.shm
        if shm:
            _shm.begin_decode()
        try:
            args, kwargs = plan.bind(ex)
            if timing is not None:
                timing[1] = time.perf_counter_ns()
                st.timing = timing
            if shm:
                _shm.end_decode(None)
        except Exception as e:
            if shm:
                _shm.end_decode(_shm.execute_values(ex))
            current_request.reset(scope_token)
            if not self.claim(st):
                return None
            return error_reply(fid, _bind_failure(e))

        if plan.plain:
            func = plan.func
            return self._lifecycle(st, loop, lambda inst: func(inst, *args, **kwargs), scope_token)
        attr = plan.attr
        return self._lifecycle(st, loop, lambda inst: getattr(inst, attr)(*args, **kwargs), scope_token)

    def _run_dynamic(self, st: Request, loop: asyncio.AbstractEventLoop) -> bytes | None:
        ex = st.execute
        scope_token = current_request.set(st)
        shm = self.shm
        if shm:
            _shm.begin_decode()
        try:
            if ex.args:
                raise BadArguments(f"{ex.tool}() takes keyword arguments only", "")
            kwargs = {k: dec(v, 0) for k, v in ex.kwargs.items()}
            if shm:
                _shm.end_decode(None)
        except Exception as e:  # bad arguments, or values the codec could not make sense of
            if shm:
                _shm.end_decode(_shm.execute_values(ex))
            current_request.reset(scope_token)
            if not self.claim(st):
                return None
            if isinstance(e, (RefNotFoundError, SessionMismatchError)):
                return exception_frame(st.id, e)
            kind = pb.ERROR_KIND_BAD_ARGUMENTS if isinstance(e, BadArguments) else pb.ERROR_KIND_ENCODING
            return error_frame(st.id, kind, str(e))
        name = ex.tool
        return self._lifecycle(
            st, loop, lambda inst: inst.execute_tool(name, kwargs, inst.session_context), scope_token
        )

    def _refuse(self, st: Request, err: pb.Error) -> bytes | None:
        """Answers request `st`, whose arguments were never decoded, with `err`."""
        if self.shm:
            _shm.release_undecoded(_shm.execute_values(st.execute))
        if not self.claim(st):
            return None
        return error_reply(st.id, err)

    def _run_batch(self, st: Request, plan: Plan | None, loop: asyncio.AbstractEventLoop) -> bytes | None:
        """Runs a batch (``Execute.batch``), or a lone call of a batched tool,
        as one call of the tool through the lifecycle of any call (with the
        request's session context). Each call's keyword arguments are decoded
        (refs in the request's session); a call that passes positional
        arguments, or whose arguments fail to decode (or, stacked, whose
        keywords differ from the first call's), gets its own error and is left
        out. The tool gets the list of the others' keyword dicts, or
        (``Batch(stack=True)``) their values stacked by keyword; it is not
        called when none is left. See ``_batch_reply`` for the answer."""
        ex = st.execute
        name = ex.tool
        if type(plan) is not ToolPlan or plan.batch is None:
            return self._refuse(
                st, error_message(pb.ERROR_KIND_BAD_ARGUMENTS, f"tool {name!r} is not batched", details={"tool": name})
            )
        if ex.stream:
            return self._refuse(
                st,
                error_message(
                    pb.ERROR_KIND_BAD_ARGUMENTS,
                    f"batched tool {name!r} cannot stream: it returns one result per call",
                    details={"tool": name},
                ),
            )
        if ex.batch and (ex.args or ex.kwargs):
            return self._refuse(
                st,
                error_message(
                    pb.ERROR_KIND_BAD_ARGUMENTS,
                    f"a batch of {name!r} carries its arguments in its calls (Execute.batch), "
                    "never in Execute.args or kwargs",
                    details={"tool": name},
                ),
            )
        np: types.ModuleType | None = None
        if plan.batch.stack:
            try:
                np = _numpy.load(f"batched tool {name!r} (Batch(stack=True))")
            except ModuleNotFoundError as e:
                return self._refuse(st, exception_error(e))
        # Current from here on: refs in the calls' arguments belong to its session.
        scope_token = current_request.set(st)
        timing = [time.perf_counter_ns(), 0, 0] if "traceparent" in ex.metadata else None
        calls: list[pb.Execute | pb.BatchCall] = list(ex.batch) if ex.batch else [ex]
        errors: dict[int, pb.Error] = {}
        # The calls given to the tool (their places in the batch) and their keyword arguments.
        given: list[int] = []
        items: list[dict[str, Any]] = []
        shm = self.shm
        for i, call in enumerate(calls):
            if call.args:
                if shm:
                    _shm.release_undecoded(_shm.execute_values(call))
                errors[i] = error_message(
                    pb.ERROR_KIND_BAD_ARGUMENTS,
                    f"{name}() takes keyword arguments only: a batched tool gets each call's keywords",
                )
                continue
            if shm:
                _shm.begin_decode()
            try:
                kwargs = {k: dec(v, 0) for k, v in call.kwargs.items()}
            except Exception as e:  # values the codec refused, refs unknown or of another session
                if shm:
                    _shm.end_decode(call.kwargs.values())
                errors[i] = _bind_failure(e)
                continue
            if shm:
                _shm.end_decode(None)
            given.append(i)
            items.append(kwargs)
        arg: Any = items
        early: pb.Error | None = None
        if np is not None and items:
            keys = items[0].keys()
            for i, item in zip(given, items):
                if item.keys() != keys:
                    errors[i] = error_message(
                        pb.ERROR_KIND_BAD_ARGUMENTS,
                        f"{name}() stacks its calls' arguments, so every call passes the same keywords: "
                        f"this one passes {sorted(item)}, the first {sorted(keys)}",
                        details={"expected": ",".join(sorted(keys)), "got": ",".join(sorted(item))},
                    )
            given = [i for i in given if i not in errors]
            items = [item for item in items if item.keys() == keys]
            try:
                arg = stack_arguments(np, items)
            except ValueError as e:
                early = error_message(pb.ERROR_KIND_BAD_ARGUMENTS, f"{name}(): {e}", details={"tool": name})
        if early is not None or not given:
            # Answered without calling the tool.
            current_request.reset(scope_token)
            if not self.claim(st):
                return None
            if early is not None:
                return error_reply(st.id, early)
            if not ex.batch:
                return error_reply(st.id, errors[0])
            return batch_result_frame(st.id, [None] * len(calls), errors, self.limit)
        if timing is not None:
            timing[1] = time.perf_counter_ns()
            st.timing = timing
        count = len(calls)

        def reply(req: Request, outcome: Any) -> bytes:
            return self._batch_reply(req, outcome, count, given, errors, np)

        if plan.plain:
            func = plan.func
            return self._lifecycle(st, loop, lambda inst: func(inst, arg), scope_token, reply)
        attr = plan.attr
        return self._lifecycle(st, loop, lambda inst: getattr(inst, attr)(arg), scope_token, reply)

    def _batch_reply(
        self,
        st: Request,
        outcome: Any,
        count: int,
        given: list[int],
        errors: dict[int, pb.Error],
        np: types.ModuleType | None,
    ) -> bytes:
        """The final frame of a batch of `count` calls whose tool, given the
        calls `given` (the others failed with `errors`), returned `outcome`: a
        Result with one item per call, in order. A result that is an exception
        instance is that call's error; one that cannot be encoded that call's
        ENCODING error. What does not answer the calls one for one fails the
        whole batch (``BatchResultMismatch``). A lone call of a batched tool is
        answered as any request: its value, or its error."""
        fid = st.id
        ex = st.execute
        try:
            results = split_results(ex.tool, outcome, len(given), np)
        except BatchResultMismatch as e:
            # Raised here, not by the tool: no traceback to show.
            return error_reply(fid, exception_error(e.with_traceback(None)))
        if not ex.batch:
            (r,) = results
            if isinstance(r, BaseException):
                return error_reply(fid, exception_error(r))
            return self._reply(st, r)
        values: list[Any] = [None] * count
        for i, r in zip(given, results):
            if isinstance(r, BaseException):
                errors[i] = exception_error(r)
            else:
                values[i] = r
        timing = st.timing
        if timing is not None:
            timing[2] = time.perf_counter_ns()
        return batch_result_frame(fid, values, errors, self.limit, self.unserializable, timing)

    def _run_ffi(
        self, st: Request, plan: FfiPlan, loop: asyncio.AbstractEventLoop, scope_token: Any
    ) -> bytes | None:
        """Runs an FFI operation (no adapter instance): decodes the arguments
        (refs resolved in the request's session), calls it, and encodes the
        outcome gracefully, all with the request current; then resets
        `scope_token`. `snakepit.ffi.stream` streams the items of what the
        call returned (or answers them as one list without Execute.stream)."""
        fid = st.id
        ex = st.execute
        reply: bytes | None = None
        error: BaseException | None = None
        streamed_seq = -1
        reply_refs: list[int] | None = None
        decoding = self.shm
        if decoding:
            _shm.begin_decode()
        try:
            args = decode_values(ex.args)
            if ex.kwargs:
                if not plan.kwargs_ok:
                    raise _ffi.FfiArgumentError(f"{plan.name} takes no keyword arguments")
                kwargs = {k: dec(v, 0) for k, v in ex.kwargs.items()}
            else:
                kwargs = NO_KWARGS
            if decoding:
                decoding = False
                _shm.end_decode(None)
            outcome = plan.func(self.ffi, args, kwargs)
            if type(outcome) is types.CoroutineType:
                outcome = self._run_coro(st, outcome, loop)
            if plan.streams:
                gen = _ffi.as_generator(outcome)
                if ex.stream:
                    streamed_seq = self._stream(st, gen, loop, raw=True)
                else:
                    outcome = self._collect(st, gen, loop, raw=True)
            if streamed_seq < 0 and not st.cancelled:
                if self.shm:
                    _shm.take_last()
                if ex.stream:
                    reply = chunk_frame(fid, 0, outcome, True, True, None, self.limit, "ref")
                else:
                    reply = result_frame(fid, outcome, self.limit, "ref")
                if self.shm:
                    reply_refs = _shm.take_last()
        except BaseException as e:  # Cancelled, SystemExit, KeyboardInterrupt, GeneratorExit: the request's error
            error = e
            if decoding:
                _shm.end_decode(_shm.execute_values(ex))
        finally:
            current_request.reset(scope_token)
        if st.cancelled:
            # The reply (built before the cancellation was seen) is never sent.
            _shm.unsend(reply_refs)
            return None
        if error is None and streamed_seq >= 0:
            # Closing chunk: no item, needs no credit.
            with self.wlock:
                if not self.claim(st):
                    return None
            return chunk_frame(fid, streamed_seq, None, False, True, None, self.limit)
        if not self.claim(st):
            _shm.unsend(reply_refs)
            return None
        if error is None:
            return reply
        return failure_frame(fid, error)

    def _lifecycle(
        self,
        st: Request,
        loop: asyncio.AbstractEventLoop,
        call: Callable[[Any], Any],
        scope_token: Any,
        reply: Callable[[Request, Any], bytes] | None = None,
    ) -> bytes | None:
        """Runs a tool: instance, initialize(), the call, cleanup(); then
        resets `scope_token` (the request was made current by the caller).
        `reply` makes the final frame of what the tool returned (``_reply``
        when None)."""
        fid = st.id
        ex = st.execute
        inst: Any = None
        outcome: Any = None
        error: BaseException | None = None
        streamed_seq = -1  # >= 0 once a stream ran to its end: the next seq
        shared = self.shared
        try:
            if shared is None:
                inst = self.cls()
                ctx = SessionContext(ex.session_id, ex.metadata, _request=st, _host=self.host)
                if self.ctx_direct:
                    inst.__dict__[OWN_CONTEXT] = ctx
                elif self.has_set_ctx:
                    inst.set_session_context(ctx)
                else:
                    inst.session_context = ctx
                if self.initialize is not None:
                    r = inst.initialize()
                    if inspect.isawaitable(r):
                        self._run_coro(st, r, loop)
            else:
                # One instance for all requests: its session_context is this
                # request's while the request runs (see RequestScopedContext).
                ctx = SessionContext(ex.session_id, ex.metadata, _request=st, _host=self.host)
                st.shared = shared
                st.context = ctx
                if self.has_set_ctx and not self.ctx_direct:
                    shared.set_session_context(ctx)
                elif not self.scoped_ctx:
                    shared.session_context = ctx
            target = inst if shared is None else shared
            checker = self.checker
            if checker is None:
                outcome, streamed_seq = self._invoke(st, call, target, loop)
            else:
                with checker.track_execution(ex.tool, adapter=target):
                    outcome, streamed_seq = self._invoke(st, call, target, loop)
                checker.check_library_safety(adapter=target)
        except BaseException as e:  # Cancelled, SystemExit, KeyboardInterrupt, GeneratorExit: the request's error
            error = e
        finally:
            if inst is not None and self.cleanup is not None:
                try:
                    r = inst.cleanup()
                    if inspect.isawaitable(r):
                        self._run_coro(st, r, loop)
                except BaseException as e:
                    if error is None:
                        error = e
                    else:
                        sys.stderr.write(f"snakepit worker: cleanup() raised after an error:\n{format_tb(e)}")
            current_request.reset(scope_token)
        if st.cancelled:
            return None
        if error is not None:
            if not self.claim(st):
                return None
            return failure_frame(fid, error)
        if streamed_seq >= 0:
            # Closing chunk: no item, needs no credit.
            with self.wlock:
                if not self.claim(st):
                    return None
            return chunk_frame(fid, streamed_seq, None, False, True, None, self.limit)
        if not self.claim(st):
            return None
        build = self._reply if reply is None else reply
        if self.unserializable == "ref":
            # Refs are stored under the session of the request current.
            scope_token = current_request.set(st)
            try:
                return build(st, outcome)
            finally:
                current_request.reset(scope_token)
        return build(st, outcome)

    def _reply(self, st: Request, outcome: Any) -> bytes:
        """The final frame of a request whose tool returned `outcome`."""
        fid = st.id
        if st.execute.stream:
            try:
                return chunk_frame(fid, 0, outcome, True, True, None, self.limit, self.unserializable)
            except (EncodingError, TooLarge) as e:
                return failure_frame(fid, e)
        timing = st.timing
        if timing is not None:
            timing[2] = time.perf_counter_ns()
        return result_frame(fid, outcome, self.limit, self.unserializable, timing)

    def _invoke(
        self, st: Request, call: Callable[[Any], Any], target: Any, loop: asyncio.AbstractEventLoop
    ) -> tuple[Any, int]:
        """Calls the tool on `target`, runs a coroutine it returns, and streams
        (Execute.stream) or collects a generator; returns (outcome,
        streamed_seq), streamed_seq >= 0 once a stream ran to its end."""
        outcome = call(target)
        if inspect.iscoroutine(outcome):
            outcome = self._run_coro(st, outcome, loop)
        if isinstance(outcome, (types.GeneratorType, types.AsyncGeneratorType)):
            if st.execute.stream:
                return None, self._stream(st, outcome, loop)
            return self._collect(st, outcome, loop), -1
        return outcome, -1

    def _next_item(
        self, st: Request, gen: Any, loop: asyncio.AbstractEventLoop, on_wait: Callable[[], None] | None = None
    ) -> Any:
        if isinstance(gen, types.GeneratorType):
            return next(gen, _END)
        try:
            return self._run_coro(st, gen.__anext__(), loop, on_wait)
        except StopAsyncIteration:
            return _END

    def _close(self, st: Request, gen: Any, loop: asyncio.AbstractEventLoop) -> None:
        if isinstance(gen, types.GeneratorType):
            gen.close()
        else:
            loop.run_until_complete(gen.aclose())

    def _collect(self, st: Request, gen: Any, loop: asyncio.AbstractEventLoop, raw: bool = False) -> list[Any]:
        """The generator's items as a list (`raw`: the items themselves, no
        StreamChunk or envelope dicts understood), for a call made without
        streaming.

        Never forever: once the items are certain to exceed the frame limit
        (``_size_floor``) it raises TooLarge, and past the request's deadline
        DrainDeadlineExceeded (checked between items; an async generator's
        wait for its next item is cut at the deadline too); either way the
        generator is closed."""
        items: list[Any] = []
        limit = self.limit
        deadline = st.deadline
        size = 0
        sync = isinstance(gen, types.GeneratorType)
        try:
            while not st.cancelled:
                if sync or not deadline:
                    item = self._next_item(st, gen, loop)
                else:
                    item = self._next_item_until(st, gen, loop, deadline, len(items))
                if item is _END:
                    return items
                if raw or type(item) in _PLAIN_ITEMS:
                    data, final = item, False
                else:
                    data, final, _ = _unwrap_item(item)
                items.append(data)
                size += _size_floor(data)
                if size > limit:
                    raise TooLarge(
                        f"tool {st.execute.tool!r} returned a generator, called without streaming: its "
                        f"{len(items)} items so far need more than max_frame_bytes ({limit}) as one reply; "
                        "call it as a stream",
                        size=size,
                        limit=limit,
                    )
                if final:
                    return items
                if deadline and time.monotonic() > deadline:
                    raise DrainDeadlineExceeded(st.execute.tool, len(items), st.execute.timeout_ms)
            raise Cancelled
        finally:
            self._close(st, gen, loop)

    def _next_item_until(
        self, st: Request, gen: Any, loop: asyncio.AbstractEventLoop, deadline: float, count: int
    ) -> Any:
        """The async generator's next item, waiting for it until `deadline` at most."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise DrainDeadlineExceeded(st.execute.tool, count, st.execute.timeout_ms)
        try:
            return self._run_coro(st, asyncio.wait_for(gen.__anext__(), left), loop)
        except StopAsyncIteration:
            return _END
        except asyncio.TimeoutError:
            if st.cancelled:
                raise
            raise DrainDeadlineExceeded(st.execute.tool, count, st.execute.timeout_ms) from None

    def _stream(self, st: Request, gen: Any, loop: asyncio.AbstractEventLoop, raw: bool = False) -> int:
        """Send the generator's items as chunks; return the seq of the closing chunk, or -1 if none is needed.

        `raw` (FFI streams): each item is the data as it is (no StreamChunk or
        envelope dicts understood), encoded gracefully.

        Each chunk takes a credit when it is made; the frames are held and
        written together (see ``_stream_batch``): at BATCH_BYTES, on the final
        chunk, BOUND_S after the first held one, right away when the generator
        took that long for its item (a slow generator's chunks are not held),
        and before anything waits: credits, an async generator's await, the
        end of the stream or its error."""
        cond = st.cond
        assert cond is not None
        fid = st.id
        limit = self.limit
        prefix = chunk_prefix(fid)
        seq = 0
        shm = self.shm
        mode = "ref" if raw else self.unserializable
        # Credits taken from st.credits, each owed by one chunk still to make.
        budget = 0
        held = Held(lambda h, final: self._write_held(st, h, final), prefix)
        self.held[fid] = held
        lock = held.lock
        watch = self.flusher.watch
        run = held.run
        # Runs only where a full one fits well within the frame limit.
        run_cap = min(BATCH_BYTES, limit - 2 * RUN_ITEM_MAX)
        # Bytes in the run since the stream last emptied it.
        run_bytes = 0
        # Nothing held since the stream last wrote.
        empty = True
        sync = isinstance(gen, types.GeneratorType)
        on_wait = None if sync else (lambda: self._flush_held(st, held, False))
        clock = time.perf_counter
        last = clock()
        try:
            while True:
                if sync:
                    item = next(gen, _END)
                else:
                    item = self._next_item(st, gen, loop, on_wait)
                if item is _END:
                    self._flush_held(st, held, True)
                    return seq
                if raw or type(item) in _PLAIN_ITEMS:
                    data, final, meta = item, False, None
                else:
                    data, final, meta = _unwrap_item(item)
                if budget <= 0:
                    # Never hold chunks while waiting for credits.
                    with lock:
                        if held.pending():
                            held.writes += 1
                            if not self._write_held(st, held, False):
                                raise Cancelled
                        held.restart_run(seq)
                    run_bytes = 0
                    empty = True
                    with cond:
                        while st.credits <= 0 and not st.cancelled:
                            cond.wait()
                        if st.cancelled:
                            raise Cancelled
                        budget = st.credits
                        st.credits = 0
                elif st.cancelled:
                    raise Cancelled
                budget -= 1
                now = clock()
                element = None if (final or meta or run_cap <= 0) else run_item(data)
                if element is not None:
                    # The usual small item: no frame, no lock.
                    run.append(element)
                    run_bytes += len(element)
                    if empty or not held.armed:
                        # Nothing was held before this item (the stream or the
                        # flusher wrote it all): the bound counts from now.
                        with lock:
                            held.since = now
                            if not held.armed:
                                watch(held)
                        empty = False
                    if held.size + run_bytes >= run_cap or now - held.since >= BOUND_S or now - last >= BOUND_S:
                        with lock:
                            held.writes += 1
                            ok = self._write_held(st, held, False)
                            held.restart_run(seq + 1)
                        run_bytes = 0
                        empty = True
                        if not ok:
                            raise Cancelled
                    last = now
                    seq += 1
                    continue
                frame = None
                refs = None
                if not (final or meta):
                    frame = scalar_chunk(prefix, seq, data, limit)
                if frame is None:
                    if shm:
                        _shm.take_last()
                    frame = chunk_frame(fid, seq, data, True, final, meta, limit, mode)
                    if shm:
                        refs = _shm.take_last()
                with lock:
                    held.seal()
                    held.restart_run(seq + 1)
                    run_bytes = 0
                    if refs:
                        held.refs.extend(refs)
                    frames = held.frames
                    if not frames:
                        held.since = now
                        if not held.armed:
                            watch(held)
                    frames.append(frame)
                    held.size += len(frame)
                    if final or held.size >= BATCH_BYTES or now - held.since >= BOUND_S or now - last >= BOUND_S:
                        held.writes += 1
                        empty = True
                        if not self._write_held(st, held, final):
                            raise Cancelled
                    else:
                        empty = False
                last = now
                seq += 1
                if final:
                    st.cancelled = True  # already answered: nothing more may be sent
                    return -1
        except BaseException:
            # The chunks made before a failure go out before its error.
            if not st.cancelled:
                self._flush_held(st, held, False)
            raise
        finally:
            held.done = True
            self.held.pop(fid, None)
            with lock:
                if held.refs:
                    # Chunks dropped unsent (the stream was cancelled).
                    held.frames = []
                    _shm.unsend(held.refs)
            self._close(st, gen, loop)

    def flush_stream(self, fid: int) -> None:
        """Writes the chunks stream `fid` holds, if any: what the generator
        sends itself (telemetry) follows the chunks it made before."""
        held = self.held.get(fid)
        if held is not None and held.pending():
            with held.lock:
                if held.pending():
                    held.write(held, False)

    def _flush_held(self, st: Request, held: Held, strict: bool) -> None:
        """Writes the frames `held` holds, if any; `strict`: raises Cancelled
        when they may not go out (the request was cancelled)."""
        with held.lock:
            if held.pending():
                held.writes += 1
                if not self._write_held(st, held, False) and strict:
                    raise Cancelled

    def _write_held(self, st: Request, held: Held, final: bool) -> bool:
        """Writes the frames `held` holds in one write (under `held.lock`);
        False when they were dropped instead: the request was cancelled, or
        (`final`: they end with the final chunk) already answered."""
        data = held.take()
        refs, held.refs = held.refs, []
        try:
            with self.wlock:
                if st.cancelled or (final and self.registry.pop(st.id, None) is None):
                    # Never sent: the shared regions they named are not the host's.
                    _shm.unsend(refs)
                    return False
                if self.shm and _shm.RELEASES:
                    data += _shm.drain_frames()
                self.sock.sendall(data)
        except OSError:
            self.finish(EXIT_OK, "")
        return True
