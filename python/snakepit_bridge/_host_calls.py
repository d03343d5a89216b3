"""The worker's side of calls from Python to the host: the waiter of one open
call, the mapping of the host's errors to exceptions, and the table of
variable watches with the thread that runs their callbacks.

The worker (``_worker.py``) owns the socket and the capacity slots; this module
holds what does not touch either.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import queue
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from ._codec import decode
from ._proto import snakepit_pb2 as pb
from .errors import HostCallRejected, HostCallTimeout, HostToolError, HostToolNotFound, VariableConstraintError

__all__: list[str] = []

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
            if not self._pending:
                self._backlog.clear()

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
                continue
            try:
                old = decode(u.old_value) if u.HasField("old_value") else None
                new = decode(u.new_value) if u.HasField("new_value") else None
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
                    loop.run_until_complete(r)  # type: ignore[arg-type]
            except BaseException:  # SystemExit and the like too: the dispatcher serves on
                sys.stderr.write(
                    f"snakepit worker: callback of variable watch {w.id} ({u.name!r}) raised:\n{traceback.format_exc()}"
                )
