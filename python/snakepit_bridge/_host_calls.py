"""The worker's side of calls from Python to the host: the client that makes
them (``HostCalls``), the waiter of one open call, the mapping of the host's
errors to exceptions, and the table of variable watches with the thread that
runs their callbacks.

Tools reach ``HostCalls`` through their ``SessionContext`` and the FFI's
callbacks (both see it as a ``host_call``/``watch``/``unwatch`` link); the
reader (``_worker.py``) hands it the host's answers. The worker owns the
socket and the capacity slots: it gives the client a function to send
frames and the two that give a waiting request's slot back and take it again.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import math
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from . import _frames, _shm, telemetry
from ._codec import dec
from ._proto import snakepit_pb2 as pb
from ._request import Cancelled, Request
from .errors import HostCallRejected, HostCallTimeout, HostToolError, HostToolNotFound, VariableConstraintError

__all__: list[str] = []

# How long a host call waits when the request has no deadline.
_DEFAULT_HOST_CALL_TIMEOUT = 30.0
# A host call that inherits its request's deadline waits this much longer: the
# host, whose clock started first, is the one to end the request (Timeout to
# its caller, Cancel to us); ours is the backstop for a host that went quiet.
_HOST_DEADLINE_GRACE = 0.25
# Ids of host calls given up (timed out, cancelled) remembered so that their
# late answers are dropped quietly.
_ABANDONED_HOST_CALLS = 1024

# Updates for a watch id not known yet are kept (while a watch call is in
# flight) up to this many, in case the host sent them before its answer.
_BACKLOG = 1024

_ERROR_CLASSES: dict[int, type[HostToolError]] = {
    pb.ERROR_KIND_UNKNOWN_TOOL: HostToolNotFound,
    pb.ERROR_KIND_NOT_FOUND: HostToolNotFound,
    pb.ERROR_KIND_CONSTRAINT: VariableConstraintError,
    pb.ERROR_KIND_TIMEOUT: HostCallTimeout,
    pb.ERROR_KIND_BUSY: HostCallRejected,
}


def kind_name(kind: int) -> str:
    """The lower-case name of an ``ErrorKind`` value, e.g. ``"not_found"``."""
    try:
        name = pb.ErrorKind.Name(kind)
    except ValueError:
        return f"kind_{kind}"
    return name.removeprefix("ERROR_KIND_").lower()


def error_from_pb(err: pb.Error, tool: str) -> HostToolError:
    """The exception that stands for the host's answer ``err`` to a call of ``tool``."""
    cls = _ERROR_CLASSES.get(err.kind, HostToolError)
    kind = kind_name(err.kind)
    return cls(
        err.message or f"host tool {tool!r} failed ({kind})",
        kind=kind,
        details=dict(err.details),
        parameter=err.parameter,
        python_type=err.python_type,
        traceback=err.traceback,
        tool=tool,
    )


class HostWaiter:
    """One open host call: the thread that made it waits on ``event``.

    The reading thread sets ``outcome`` (and ``failure`` if ``on_value``
    refused the answer) and then the event, both under the worker's host-call
    lock; a cancellation of the calling request sets the event alone.
    """

    __slots__ = ("id", "request", "tool", "event", "outcome", "failure", "on_value")

    def __init__(
        self,
        fid: int,
        request: Any,
        tool: str,
        on_value: Callable[[pb.Value], None] | None,
    ) -> None:
        self.id = fid
        self.request = request
        self.tool = tool
        self.event = threading.Event()
        self.outcome: pb.HostCallResult | None = None
        self.failure: BaseException | None = None
        self.on_value = on_value


WatchCallback = Callable[[Any, Any, dict[str, str]], Any]


class _Watch:
    __slots__ = ("id", "session_id", "callback")

    def __init__(self, watch_id: str, session_id: str, callback: WatchCallback) -> None:
        self.id = watch_id
        self.session_id = session_id
        self.callback = callback


class WatchTable:
    """The variable watches of one worker, keyed by the host's watch id.

    ``deliver`` runs on the thread that reads the socket and only queues: the
    callbacks run one at a time, in the order the updates came, on a dedicated
    dispatcher thread started with the first watch.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: dict[str, _Watch] = {}
        self._pending = 0
        self._backlog: collections.deque[pb.VariableUpdate] = collections.deque(maxlen=_BACKLOG)
        self._queue: queue.SimpleQueue[tuple[_Watch, pb.VariableUpdate]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def begin(self) -> None:
        """Note that a watch call is in flight (updates for unknown ids are kept meanwhile)."""
        with self._lock:
            self._pending += 1

    def end(self) -> None:
        """Note that a watch call finished."""
        with self._lock:
            self._pending -= 1
            dropped: list[pb.VariableUpdate] = []
            if not self._pending:
                dropped = list(self._backlog)
                self._backlog.clear()
        if dropped:
            _shm.drop_values([v for u in dropped for v in (u.old_value, u.new_value)])

    def add(self, watch_id: str, session_id: str, callback: WatchCallback) -> None:
        """Register a watch; updates for it that came early are delivered now."""
        w = _Watch(watch_id, session_id, callback)
        with self._lock:
            self._watches[watch_id] = w
            early = [u for u in self._backlog if u.watch_id == watch_id]
            if early:
                rest = [u for u in self._backlog if u.watch_id != watch_id]
                self._backlog.clear()
                self._backlog.extend(rest)
            if self._thread is None:
                self._thread = threading.Thread(target=self._main, name="snakepit-watch-callbacks", daemon=True)
                self._thread.start()
            for u in early:
                self._queue.put((w, u))

    def remove(self, watch_id: str) -> bool:
        """Forget a watch; returns whether it was known."""
        with self._lock:
            return self._watches.pop(watch_id, None) is not None

    def drop_session(self, session_id: str) -> int:
        """Forget every watch of a session; returns how many there were."""
        with self._lock:
            gone = [k for k, w in self._watches.items() if w.session_id == session_id]
            for k in gone:
                del self._watches[k]
        return len(gone)

    def ids(self) -> list[str]:
        """The watch ids known right now."""
        with self._lock:
            return list(self._watches)

    def deliver(self, update: pb.VariableUpdate) -> None:
        """Queue an update for its watch's callback; updates of unknown watches are dropped."""
        with self._lock:
            w = self._watches.get(update.watch_id)
            if w is None:
                if self._pending:
                    self._backlog.append(update)
                else:
                    _shm.drop_values([update.old_value, update.new_value])
                return
        self._queue.put((w, update))

    def _main(self) -> None:
        loop: asyncio.AbstractEventLoop | None = None
        get = self._queue.get
        while True:
            w, u = get()
            with self._lock:
                live = self._watches.get(w.id) is w
            if not live:
                _shm.drop_values([u.old_value, u.new_value])
                continue
            try:
                old = _shm.decode_guarded(u.old_value) if u.HasField("old_value") else None
                new = _shm.decode_guarded(u.new_value) if u.HasField("new_value") else None
                meta = dict(u.metadata)
                meta.setdefault("source", u.source)
                meta.setdefault("name", u.name)
                meta.setdefault("variable_id", u.variable_id)
                meta.setdefault("version", str(u.version))
                meta.setdefault("watch_id", u.watch_id)
                r = w.callback(old, new, meta)
                if inspect.isawaitable(r):
                    if loop is None:
                        loop = asyncio.new_event_loop()
                    loop.run_until_complete(r)
            except BaseException:  # SystemExit and the like too: the dispatcher serves on
                sys.stderr.write(
                    f"snakepit worker: callback of variable watch {w.id} ({u.name!r}) raised:\n{traceback.format_exc()}"
                )


class HostCalls:
    """Calls from the worker's Python code to host tools, and their answers.

    A calling thread sends a HostCall frame and waits for the HostCallResult
    the reading thread hands to ``on_result``. Open calls are kept by id (the
    worker's own id space) with the ids given up on, all under ``lock``.
    While it waits, a running request gives its capacity slot back
    (`wait_begin`, `wait_end`), since the host tool may call tools of this
    worker in turn.
    """

    def __init__(
        self,
        send: Callable[[bytes], None],
        limit: int,
        wait_begin: Callable[[Request], None],
        wait_end: Callable[[Request], None],
    ) -> None:
        self.send = send
        self.limit = limit
        self.wait_begin = wait_begin
        self.wait_end = wait_end
        self.lock = threading.Lock()
        self.calls: dict[int, HostWaiter] = {}
        self.seq = 0
        self.abandoned: collections.deque[int] = collections.deque(maxlen=_ABANDONED_HOST_CALLS)
        self.watches = WatchTable()

    def host_call(
        self,
        request: Any,
        session_id: str,
        tool: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        *,
        timeout: float | None,
        on_value: Callable[[pb.Value], None] | None = None,
        graceful: bool = False,
    ) -> Any:
        """Calls host tool `tool` for `request` (the caller's Request, or None)
        and waits for the answer; returns its value or raises what it says.

        While it waits, a running request gives its slot back (`wait_begin`).
        `on_value`, if given, runs on the reading thread with the answer's value
        before the caller wakes (used to register a watch before its first update
        can arrive). Raises Cancelled when the request is cancelled meanwhile,
        HostCallTimeout after `timeout` seconds (default: what is left of the
        request's deadline, else _DEFAULT_HOST_CALL_TIMEOUT). `graceful`: the
        arguments are encoded as FFI results are (a host callback's are)."""
        st: Request | None = request if isinstance(request, Request) and request.slot is not None else None
        if st is not None and st.cancelled:
            raise Cancelled
        if timeout is None:
            if st is not None and st.deadline:
                left = st.deadline - time.monotonic()
                if left <= 0:
                    raise HostCallTimeout(
                        f"not calling host tool {tool!r}: the request's deadline has passed",
                        kind="timeout",
                        tool=tool,
                    )
                timeout = left + _HOST_DEADLINE_GRACE
            else:
                timeout = _DEFAULT_HOST_CALL_TIMEOUT
        elif not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        timeout_ms = max(1, math.ceil(timeout * 1000.0))
        lock = self.lock
        with lock:
            self.seq += 1
            hid = self.seq
        _shm.take_last()
        data = _frames.host_call(
            hid,
            session_id,
            tool,
            args,
            kwargs,
            timeout_ms=timeout_ms,
            parent_request_id=st.id if st is not None else 0,
            traceparent=telemetry.current_traceparent(),
            correlation_id=telemetry.get_correlation_id(),
            graceful=graceful,
        )
        size = len(data) - 4
        if size > self.limit:
            # Never sent: the shared regions it named are not the host's.
            _shm.unsend(_shm.take_last())
            raise HostToolError(
                f"call of host tool {tool!r} is {size} bytes, more than max_frame_bytes ({self.limit})",
                kind="payload_too_large",
                details={"size": str(size), "limit": str(self.limit)},
                tool=tool,
            )
        w = HostWaiter(hid, st, tool, on_value)
        with lock:
            self.calls[hid] = w
        if st is not None:
            self.wait_begin(st)
        try:
            self.send(data)
            end = time.monotonic() + timeout
            event = w.event
            while True:
                if st is not None and st.cancelled:
                    raise Cancelled
                if w.outcome is not None:
                    break
                left = end - time.monotonic()
                if left <= 0:
                    with lock:
                        gone = self.calls.pop(hid, None) is not None
                        if gone:
                            self.abandoned.append(hid)
                    if gone:
                        raise HostCallTimeout(
                            f"host tool {tool!r} did not answer within {timeout_ms} ms",
                            kind="timeout",
                            details={"timeout_ms": str(timeout_ms)},
                            tool=tool,
                        )
                    # The answer came just now: `outcome` is set.
                    continue
                event.wait(left)
        finally:
            if w.outcome is None:
                with lock:
                    if self.calls.pop(hid, None) is not None:
                        self.abandoned.append(hid)
            if st is not None:
                self.wait_end(st)
        if w.failure is not None:
            raise w.failure
        res = w.outcome
        assert res is not None
        which = res.WhichOneof("outcome")
        if which == "value":
            return _shm.decode_guarded(res.value)
        if which == "error":
            raise error_from_pb(res.error, tool)
        return None

    def watch(
        self,
        request: Any,
        session_id: str,
        identifiers: list[str],
        include_initial: bool,
        callback: Callable[[Any, Any, dict[str, str]], Any],
        *,
        timeout: float | None,
    ) -> str:
        """Asks the host to watch variables of the session and registers
        `callback` for the watch id it answers; returns that id."""
        watches = self.watches

        def register(value: pb.Value) -> None:
            watch_id = dec(value, 0)
            if not isinstance(watch_id, str) or not watch_id:
                raise HostToolError(
                    f"snakepit.variables.watch answered {watch_id!r}, not a watch id",
                    kind="protocol",
                    tool="snakepit.variables.watch",
                )
            watches.add(watch_id, session_id, callback)

        watches.begin()
        try:
            watch_id: str = self.host_call(
                request,
                session_id,
                "snakepit.variables.watch",
                (),
                {"identifiers": list(identifiers), "include_initial": bool(include_initial)},
                timeout=timeout,
                on_value=register,
            )
            return watch_id
        finally:
            watches.end()

    def unwatch(self, request: Any, session_id: str, watch_id: str, *, timeout: float | None) -> None:
        """Forgets a watch here (no callback of it runs afterwards) and at the host."""
        self.watches.remove(watch_id)
        self.host_call(request, session_id, "snakepit.variables.unwatch", (), {"watch_id": watch_id}, timeout=timeout)

    # ----------------------------------------------------- from the reader

    def on_result(self, frame: pb.Frame) -> None:
        """The host answered host call `frame.id`: wakes its caller."""
        fid = frame.id
        with self.lock:
            w = self.calls.pop(fid, None)
            if w is not None:
                res = frame.host_call_result
                if w.on_value is not None and res.WhichOneof("outcome") == "value":
                    try:
                        w.on_value(res.value)
                    except Exception as e:
                        w.failure = e
                w.outcome = res
                w.event.set()
                return
            abandoned = fid in self.abandoned
        if frame.host_call_result.WhichOneof("outcome") == "value":
            # Nobody will decode it: shared regions in it go back.
            _shm.drop_values([frame.host_call_result.value])
        if not abandoned:
            sys.stderr.write(f"snakepit worker: ignoring HostCallResult for id {fid}: no open host call has that id\n")

    def on_undecodable_result(self, fid: int, e: Exception) -> bool:
        """The host's answer to call `fid` could not be decoded: its caller
        gets a protocol error. Returns whether such a call was open."""
        with self.lock:
            w = self.calls.pop(fid, None)
            if w is None:
                return False
            w.failure = HostToolError(
                f"the host's answer to the call of {w.tool!r} could not be decoded: {e}",
                kind="protocol",
                tool=w.tool,
            )
            w.outcome = pb.HostCallResult()
            w.event.set()
            return True

    def wake(self, st: Request) -> None:
        """Wakes the threads of cancelled request `st` that wait on the host."""
        with self.lock:
            for w in self.calls.values():
                if w.request is st:
                    w.event.set()
