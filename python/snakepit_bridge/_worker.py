"""The worker process: one connection to the host, framed protobuf both ways.

Threads (leader/follower):
  * capacity + 1 threads (capacity is 1 in the process profile, ``--threads`` in
    the thread profile) both read and execute. One at a time holds ``rlock`` and
    reads frames, answering Ping/Credit/Cancel/Release* itself and queueing
    Execute requests; it runs known-quick requests itself and hands the socket
    to a follower before running anything else. Each owns a persistent asyncio
    loop for async tools;
  * a watch thread hands the socket to a follower when such a quick request
    runs long on the reader, so Ping and Cancel are always answered promptly;
  * host calls (a tool calling a host tool, see ``host_call``): the calling
    thread waits for the HostCallResult, which the reading thread delivers.
    While it waits, its request gives its capacity slot back, because the host
    tool may call tools of this worker in turn (nested Execute frames), and a
    reader that is running such a tool inline hands the socket over first.
    Every request whose slot is given back keeps its thread, so one more
    executor thread is started when needed: the worker keeps at least
    capacity + 1 + (requests waiting on the host) threads, so a thread is
    always left to read the socket. At most _MAX_HOST_WAITERS requests give
    their slot back at once (so at most capacity + 1 + _MAX_HOST_WAITERS
    executor threads); beyond that a waiting request keeps its slot;
  * a dispatcher thread, started with the first variable watch, runs watch
    callbacks (``_host_calls.WatchTable``).

This module is the reader loop, the leader/follower scheduling of the executor
threads and the start-up. The rest lives by concern: options in
``_config.py``, framing in ``_wire.py``, every frame built in ``_frames.py``,
tool plans and argument checks in ``_binding.py``, the adapter lifecycle and
streams in ``_runner.py``, host calls in ``_host_calls.py``, the Error frame of
an exception in ``_failures.py``.

Adapter instances (see ``base_adapter_threaded`` for the user-facing rules):
in the process profile every request gets a new instance (``initialize()``
and ``cleanup()`` around the tool); the thread profile accepts only classes
declaring ``__thread_safe__ = True`` and serves every request on one instance
created, and initialized, at start-up and cleaned up when the worker exits.
An adapter's ``warmup()`` runs once before the Hello (``Runner.warmup``): the
worker is ready only once it returned, and fails to start if it raises.
``_context.current_request`` is set to the ``Request`` around everything run
for a request, which scopes ``self.session_context`` of the shared instance
and gives telemetry its frame id. ``--thread-safety-check`` wraps every tool
call in a ``ThreadSafetyChecker`` whose warnings become telemetry events.

Every in-flight request lives in ``_Worker.registry`` until its final reply is
claimed: whoever pops it from the registry (the executor with a result, the
reader with a Cancel, the shutdown path) sends the one final frame.

The universal FFI (``_ffi.py``, ``docs/ffi-protocol.md``): the reserved tools
``snakepit.ffi.*`` are ``FfiPlan`` entries in ``plans`` (unless ``--no-ffi``),
so quick ones run inline like quick adapter tools; the runner runs them with
no adapter instance. Ref, stream-ref and callback values decode through the
FFI in the arguments of every tool; ``current_request`` is set from before the
arguments are decoded, as refs belong to the request's session.
"""

from __future__ import annotations

import asyncio
import collections
import os
import platform
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from . import __version__, _ffi, _frames, _shm
from ._binding import FfiPlan, Plan, ToolPlan, check_profile, class_name, load_adapter, tools_of
from ._codec import LIST_COST, MAP_COST, WIRE_DEPTH
from ._config import WorkerConfig, parse_args
from ._context import set_telemetry_sink
from ._failures import format_tb
from ._frames import error as error_frame
from ._host_calls import HostCalls
from ._proto import snakepit_pb2 as pb
from ._request import Request
from ._runner import Runner
from ._wire import peek_frame, unpack_len
from .logging_config import configure_logging
from .thread_safety_checker import ThreadSafetyError

__all__ = ["WorkerConfig", "main", "parse_args", "run"]

PROTOCOL_VERSION = 1
DEFAULT_STREAM_WINDOW = 64
EXIT_OK = 0
EXIT_PROTOCOL = 2
EXIT_STARTUP = 3

# A request whose last run took less than this may have its reply held back
# (batched with the next replies) while more work is queued.
_FAST_SECONDS = 100e-6
_MAX_BATCH = 64
# A known-quick request runs on the thread that reads the socket, which keeps
# reading once it returns. If such a run lasts longer than this, the watch
# thread hands the socket to a follower while it still runs, so Ping, Cancel
# and new work are not left waiting for a quick tool that turned slow.
_INLINE_HANDOFF_SECONDS = 0.02
# The watch thread keeps checking on this period while inline runs keep
# starting, and sleeps until the next one once none started for this long.
_WATCH_LINGER_SECONDS = 0.1
# Requests that may give their capacity slot back while they wait on the host
# at the same time, i.e. executor threads started beyond capacity + 1.
_MAX_HOST_WAITERS = 16
# Telemetry frames emitted before the Hello went out (by the shared instance's
# __init__/initialize) are held, at most this many; later ones are dropped.
_MAX_EARLY_TELEMETRY = 1024
# Kinds of frames from the host that get an answer of their own (Execute has
# its own error; Cancel, Credit, Shutdown and the rest do not).
_ANSWERED_KINDS = frozenset({"ping", "release_session", "release_ref"})


class _Executor:
    __slots__ = ("current", "loop", "reading", "pending")

    def __init__(self) -> None:
        self.current: Request | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # True while this thread holds `rlock` (touched by its own thread only).
        self.reading = False
        # Replies this thread holds back, to send in one batch.
        self.pending: list[bytes] = []


# ------------------------------------------------------------------ worker


class _Worker:
    def __init__(self, config: WorkerConfig, sock: socket.socket, cls: type, plans: dict[str, Plan]) -> None:
        self.config = config
        self.sock = sock
        self.plans = plans
        self.max = config.max_frame_bytes
        # Every in-flight request until its final reply is claimed (see ``Runner.claim``).
        self.registry: dict[int, Request] = {}
        # Leader/follower: every thread both reads and executes. One thread at
        # a time holds `rlock` and reads the socket; when what it read is work
        # it may run, it hands the socket to a follower and runs the request
        # itself, so a request never waits for a thread hand-off. There is one
        # thread more than the capacity, so a reader is always there for Ping
        # and Cancel while every slot is busy.
        self.work: collections.deque[Request] = collections.deque()
        self.work_lock = threading.Lock()
        self.busy = 0
        self.rlock = threading.Lock()
        # The inline run of the reader (at most one at a time, as only the
        # `rlock` holder runs inline), shared with the watch thread under
        # `work_lock` (taken anyway to take the request and to free its slot):
        # the thread running it, None once it ended or the watch thread took
        # the socket away from it; when it started; when the latest one did.
        self.watch_cond = threading.Condition(self.work_lock)
        self.inline_ex: _Executor | None = None
        self.inline_t0 = 0.0
        self.inline_last = 0.0
        self.watch_idle = False
        self.buf = bytearray()
        self.spin_ns = config.busy_poll_us * 1000
        self.last_batch = 0
        # Receive into one buffer: recv(n) would allocate n bytes per call.
        self.rbuf = bytearray(1 << 18)
        self.rview = memoryview(self.rbuf)
        self.wlock = threading.Lock()
        # HOST-arena offsets queued for release (empty while shared memory is
        # off): whatever writes to the socket sends them along.
        self.releases = _shm.RELEASES
        self.shm = _shm.enabled()
        self.shutting_down = False
        self.executors = [_Executor() for _ in range(config.capacity + 1)]
        self.released = 0
        # Runs that ended and whose reply is not yet in their executor's
        # held replies (`pending`): shutdown waits for them, and for the held
        # replies to go out, so no answer is lost to an exit.
        self.owed = 0
        # Telemetry frames held until the Hello is sent (None once it is).
        self.early: list[bytes] | None = []
        self.early_dropped = 0
        # Held while the worker exits: the shared instance is cleaned up once.
        self.finish_lock = threading.Lock()
        # Host calls: requests that gave their slot back to wait on the host
        # are counted in `released` (under `work_lock`).
        self.host = HostCalls(self.send, self.max, self._host_wait_begin, self._host_wait_end)
        # The universal FFI. Its ref store and decoders work even with
        # --no-ffi (refs then are never made, callbacks still are callable).
        self.ffi = _ffi.FfiRuntime(
            worker_id=config.worker_id,
            max_refs=config.max_refs,
            ref_ttl_ms=config.ref_ttl_ms,
            helper_dirs=config.helper_dirs,
            helper_allow=config.helper_allow,
            host=self.host,
        )
        _ffi.install(self.ffi)
        if config.ffi:
            for name, op in _ffi.OPS.items():
                plans[name] = FfiPlan(name, op)
        self.runner = Runner(
            cls=cls,
            plans=plans,
            registry=self.registry,
            limit=self.max,
            sock=sock,
            wlock=self.wlock,
            send=self.send,
            finish=self._finish,
            ffi=self.ffi,
            host=self.host,
            profile=config.profile,
            thread_safety_check=config.thread_safety_check,
            unserializable=config.unserializable,
        )
        # Bound once: the executors call these for every request.
        self.run_request = self.runner.run
        self.escaped = self.runner.escaped
        set_telemetry_sink(self._telemetry)

    # ------------------------------------------------------------- start/exit

    def send_hello(self, hello: bytes) -> None:
        """Sends the Hello, then the telemetry held back until it was sent."""
        try:
            with self.wlock:
                early, self.early = self.early, None
                data = hello
                if early:
                    data += b"".join(early)
                self.sock.sendall(data)
        except OSError:
            self._finish(EXIT_OK, "")
        if self.early_dropped:
            sys.stderr.write(
                f"snakepit worker: dropped {self.early_dropped} telemetry events emitted during start-up\n"
            )

    def _finish(self, code: int, message: str) -> NoReturn:
        """Exits, first running the shared instance's cleanup() (once, within the runner's limit)."""
        with self.finish_lock:
            self.runner.cleanup_shared()
            _die(code, message)

    # -------------------------------------------------------------- telemetry

    def _telemetry(self, fid: int, event: pb.TelemetryEvent) -> None:
        """The telemetry sink: sends one TelemetryEvent frame (held until the Hello went out)."""
        data = _frames.telemetry(fid, event)
        if len(data) - 4 > self.max:
            sys.stderr.write(
                f"snakepit worker: dropping telemetry event {event.name!r}: {len(data) - 4} bytes exceed "
                f"max_frame_bytes ({self.max})\n"
            )
            return
        # After the chunks the stream made before the event.
        self.runner.flush_stream(fid)
        with self.wlock:
            early = self.early
            if early is not None:
                if len(early) < _MAX_EARLY_TELEMETRY:
                    early.append(data)
                else:
                    self.early_dropped += 1
                return
            if self.releases:
                data += _shm.drain_frames()
            try:
                self.sock.sendall(data)
            except OSError:
                # The host is gone; the reading thread sees it and exits.
                pass

    # ---------------------------------------------------------------- output

    def send(self, data: bytes) -> None:
        """Writes `data`, and with it the shared-memory releases queued (see ``_shm``)."""
        try:
            with self.wlock:
                if self.releases:
                    data += _shm.drain_frames()
                if data:
                    self.sock.sendall(data)
        except OSError:
            # The host is gone: nobody is left to answer.
            self._finish(EXIT_OK, "")

    # ---------------------------------------------------------------- reader

    def serve(self) -> NoReturn:
        self.handlers = {
            "execute": self._on_execute,
            "cancel": self._on_cancel,
            "credit": self._on_credit,
            "ping": self._on_ping,
            "release_session": self._on_release_session,
            "release_ref": self._on_release_ref,
            "shutdown": self._on_shutdown,
            "host_call_result": self.host.on_result,
            "variable_update": self._on_variable_update,
            "release_shared": self._on_release_shared,
        }
        _shm.start_flusher(self.send)
        threading.Thread(target=self._watch_main, name="snakepit-watch", daemon=True).start()
        for i, ex in enumerate(self.executors[1:], start=1):
            threading.Thread(target=self._thread_main, args=(ex,), name=f"snakepit-worker-{i}", daemon=True).start()
        self._thread_main(self.executors[0])
        raise AssertionError("unreachable")

    def _read_once(self) -> None:
        """Reads from the socket once and handles every whole frame that came.
        Called only with `rlock` held."""
        try:
            n = self._recv()
        except OSError as e:
            self._finish(EXIT_OK, f"snakepit worker: connection error ({e}); exiting\n")
        if not n:
            self._finish(EXIT_OK, "")
        buf = self.buf
        buf += self.rview[:n]
        frames = 0
        maxb = self.max
        handlers = self.handlers
        from_string = pb.Frame.FromString
        pos = 0
        n_buf = len(buf)
        while n_buf - pos >= 4:
            (n,) = unpack_len(buf, pos)
            if n > maxb:
                _die(
                    EXIT_PROTOCOL,
                    f"snakepit worker: protocol error: incoming frame length {n} exceeds "
                    f"max_frame_bytes {maxb}; exiting\n",
                )
            end = pos + 4 + n
            if end > n_buf:
                break
            body = bytes(buf[pos + 4 : end])
            pos = end
            frames += 1
            try:
                frame = from_string(body)
            except Exception as e:  # upb's DecodeError: too deep, bad UTF-8, malformed
                self._on_undecodable(body, e)
                continue
            kind = frame.WhichOneof("kind")
            h = handlers.get(kind)
            try:
                if h is not None:
                    h(frame)
                else:
                    self._on_unexpected(frame, kind)
            except Exception as e:  # one odd frame is that frame's problem, never the worker's
                sys.stderr.write(f"snakepit worker: handling a {kind} frame (id {frame.id}) failed:\n{format_tb(e)}")
        if pos:
            del buf[:pos]
        self.last_batch = frames

    def _recv(self) -> int:
        """One recv. With busy polling on and nothing running, polls for a
        short while first: waking a sleeping process costs tens of
        microseconds on many machines, more than a whole call."""
        sock = self.sock
        rbuf = self.rbuf
        spin = self.spin_ns
        # Poll only after a read that brought a lone request: back-to-back
        # single calls are where a wake-up dominates. Under load, requests come
        # in batches and the CPU is better left to the host.
        if spin and self.busy == 0 and self.last_batch == 1:
            now = time.perf_counter_ns
            deadline = now() + spin
            dontwait = socket.MSG_DONTWAIT
            while True:
                try:
                    return sock.recv_into(rbuf, 0, dontwait)
                except BlockingIOError:
                    pass
                if self.busy or now() > deadline:
                    break
        return sock.recv_into(rbuf)

    def _take(self) -> Request | None:
        """The next request, if there is one and a free slot to run it."""
        with self.work_lock:
            if self.work and self.busy < self.config.capacity:
                self.busy += 1
                return self.work.popleft()
        return None

    def _on_execute(self, frame: pb.Frame) -> None:
        fid = frame.id
        if self.shutting_down:
            if self.shm:
                _shm.release_undecoded(_shm.execute_values(frame.execute))
            self.send(error_frame(fid, pb.ERROR_KIND_SHUTTING_DOWN, "worker is shutting down"))
            return
        if fid in self.registry:
            if self.shm:
                _shm.release_undecoded(_shm.execute_values(frame.execute))
            self.send(error_frame(fid, pb.ERROR_KIND_PROTOCOL, f"request id {fid} is already in flight"))
            return
        ex = frame.execute
        st = Request(fid, ex)
        timeout_ms = ex.timeout_ms
        if timeout_ms:
            st.deadline = time.monotonic() + timeout_ms / 1000.0
        if ex.stream:
            st.cond = threading.Condition()
            st.credits = ex.stream_window or DEFAULT_STREAM_WINDOW
        self.registry[fid] = st
        with self.work_lock:
            self.work.append(st)

    def _on_cancel(self, frame: pb.Frame) -> None:
        st = self.registry.pop(frame.id, None)
        if st is None:
            return
        st.cancelled = True
        cond = st.cond
        if cond is not None:
            with cond:
                cond.notify_all()
        self.host.wake(st)
        task, loop = st.task, st.loop
        if task is not None and loop is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass
        reason = frame.cancel.reason
        self.send(error_frame(frame.id, pb.ERROR_KIND_CANCELLED, f"cancelled: {reason}" if reason else "cancelled"))

    def _on_credit(self, frame: pb.Frame) -> None:
        st = self.registry.get(frame.id)
        if st is None or st.cond is None:
            return
        with st.cond:
            st.credits += frame.credit.chunks
            st.cond.notify_all()

    def _on_ping(self, frame: pb.Frame) -> None:
        in_flight = sum(1 for e in self.executors if e.current is not None)
        self.send(_frames.pong(frame.id, frame.ping.sent_unix_nanos, in_flight))

    def _on_release_session(self, frame: pb.Frame) -> None:
        sid = frame.release_session.session_id
        self.host.watches.drop_session(sid)
        self.ffi.store.release_session(sid)
        self.runner.release_hook(frame.id, "on_session_release", sid)

    def _on_release_ref(self, frame: pb.Frame) -> None:
        rr = frame.release_ref
        # An FFI ref (if it is one: a ref unknown here is no error), then the
        # adapter's hook for refs of its own.
        self.ffi.store.release(rr.session_id, rr.ref_id)
        self.runner.release_hook(frame.id, "on_ref_release", rr.session_id, rr.ref_id)

    def _on_release_shared(self, frame: pb.Frame) -> None:
        """The host gave back references to regions of this worker's arena."""
        offsets = frame.release_shared.offsets
        s = _shm.STATE
        if s is None:
            sys.stderr.write(
                f"snakepit worker: ignoring a ReleaseShared of {len(offsets)} offset(s): this worker has no shared memory\n"
            )
            return
        s.worker.release_host(offsets)

    def _on_variable_update(self, frame: pb.Frame) -> None:
        self.host.watches.deliver(frame.variable_update)

    def _on_undecodable(self, body: bytes, e: Exception) -> None:
        """A frame whose length was fine but whose body protobuf refused (a
        value nested deeper than LIMIT_VALUE_WIRE_DEPTH, a str that is not
        UTF-8, garbage): its id and kind are read from the top-level fields
        alone, and only the exchange it belongs to fails."""
        fid, kind = peek_frame(body)
        if kind == "execute":
            if fid in self.registry:
                self.send(error_frame(fid, pb.ERROR_KIND_PROTOCOL, f"request id {fid} is already in flight"))
                return
            self.send(
                error_frame(
                    fid,
                    pb.ERROR_KIND_BAD_ARGUMENTS,
                    f"the request could not be decoded ({e}): its arguments nest deeper than a frame may "
                    f"carry (lists at most {WIRE_DEPTH // LIST_COST} deep, maps {WIRE_DEPTH // MAP_COST}: "
                    f"LIMIT_VALUE_WIRE_DEPTH = {WIRE_DEPTH} protobuf levels) or are malformed",
                    details={
                        "limit": str(WIRE_DEPTH),
                        "max_list_depth": str(WIRE_DEPTH // LIST_COST),
                        "max_map_depth": str(WIRE_DEPTH // MAP_COST),
                        "size": str(len(body)),
                    },
                )
            )
            return
        if kind in _ANSWERED_KINDS:
            self.send(error_frame(fid, pb.ERROR_KIND_PROTOCOL, f"undecodable {kind} frame: {e}"))
            return
        if kind == "cancel":
            # The reason is lost; the cancellation is not.
            self._on_cancel(pb.Frame(id=fid, cancel=pb.Cancel()))
            return
        if kind == "host_call_result":
            if self.host.on_undecodable_result(fid, e):
                return
        sys.stderr.write(
            f"snakepit worker: skipping an undecodable {kind or 'unknown'} frame (id {fid}, {len(body)} bytes): {e}\n"
        )

    def _on_unexpected(self, frame: pb.Frame, kind: str | None) -> None:
        if kind is None:
            sys.stderr.write(f"snakepit worker: ignoring frame id {frame.id} with no kind (newer protocol?)\n")
            return
        sys.stderr.write(f"snakepit worker: host sent a {kind} frame, which only a worker sends\n")
        self.send(error_frame(frame.id, pb.ERROR_KIND_PROTOCOL, f"unexpected {kind} frame from the host"))

    def _on_shutdown(self, frame: pb.Frame) -> None:
        if self.shutting_down:
            return
        self.shutting_down = True
        grace = frame.shutdown.grace_ms / 1000.0
        threading.Thread(target=self._shutdown_main, args=(grace,), name="snakepit-shutdown", daemon=True).start()

    def _replies_unsent(self) -> bool:
        """Whether a finished run's reply has not gone out yet: it is on its
        way to its executor's held replies, or held there."""
        with self.work_lock:
            if self.owed:
                return True
            return any(ex.pending for ex in self.executors)

    def _shutdown_main(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not self.registry and self.busy == 0 and not self.work and not self._replies_unsent():
                break
            time.sleep(0.002)
        for fid in list(self.registry):
            st = self.registry.pop(fid, None)
            if st is not None:
                st.cancelled = True
                self.host.wake(st)
                self.send(
                    error_frame(fid, pb.ERROR_KIND_SHUTTING_DOWN, "worker shut down before the request finished")
                )
        self._finish(EXIT_OK, "")

    # ------------------------------------------------------------ host calls

    def _host_wait_begin(self, st: Request) -> None:
        """A thread of running request `st` is about to wait on the host: the
        request gives its slot back (the first of its waiting threads does), one
        more executor thread starts if that leaves no thread to read, and if the
        request runs inline on the reading thread, the socket goes to a follower."""
        held: list[bytes] | None = None
        new_ex: _Executor | None = None
        with self.work_lock:
            st.host_waits += 1
            if st.host_waits == 1 and st.slot and self.released < _MAX_HOST_WAITERS:
                st.slot = False
                self.busy -= 1
                self.released += 1
                if len(self.executors) < self.config.capacity + 1 + self.released:
                    new_ex = _Executor()
                    self.executors.append(new_ex)
            ie = self.inline_ex
            if ie is not None and ie.current is st:
                held = self._end_inline_locked(ie)
            n = len(self.executors)
        if held:
            self.send(b"".join(held))
        if new_ex is not None:
            threading.Thread(
                target=self._thread_main, args=(new_ex,), name=f"snakepit-worker-{n - 1}", daemon=True
            ).start()

    def _host_wait_end(self, st: Request) -> None:
        """A thread of `st` stopped waiting on the host: once none waits, a
        request still running takes its slot back (even beyond capacity)."""
        with self.work_lock:
            st.host_waits -= 1
            if st.host_waits == 0 and st.slot is False:
                st.slot = True
                self.busy += 1
                self.released -= 1

    # -------------------------------------------------------------- executor

    def _thread_main(self, ex: _Executor) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        ex.loop = loop
        plans = self.plans
        pending = ex.pending
        take = self._take
        while True:
            st = take()
            if st is None:
                self._flush(pending)
                st = self._lead(ex, loop, pending)
                if st is None:
                    # Lost the socket during an inline run that turned slow:
                    # carry on as a plain executor.
                    continue
            self._execute(ex, st, plans.get(st.execute.tool), loop, pending)

    def _lead(self, ex: _Executor, loop: asyncio.AbstractEventLoop, pending: list[bytes]) -> Request | None:
        """Waits for the socket, then reads it until there is a request this
        thread must run off the socket; returns it after handing the socket to
        a follower. Returns None when the watch thread took the socket away
        (and released `rlock` for it) while a known-quick request ran here."""
        rlock = self.rlock
        rlock.acquire()
        ex.reading = True
        plans = self.plans
        work = self.work
        work_lock = self.work_lock
        capacity = self.config.capacity
        clock = time.perf_counter
        try:
            while True:
                # As _take, and when the request is known to be quick, its
                # inline run starts in the same critical section.
                st: Request | None = None
                plan: Plan | None = None
                t0 = 0.0
                with work_lock:
                    if work and self.busy < capacity:
                        self.busy += 1
                        st = work.popleft()
                        plan = plans.get(st.execute.tool)
                        if plan is not None and plan.fast and not st.execute.stream:
                            # Known to be quick: run it right here, keeping
                            # the socket. Waking a follower would cost more
                            # than the call; the first slow run of the tool
                            # ends this, and the watch thread hands the socket
                            # over if it runs long.
                            t0 = clock()
                            ex.current = st
                            self.inline_ex = ex
                            self.inline_t0 = t0
                            self.inline_last = t0
                            if self.watch_idle:
                                self.watch_idle = False
                                self.watch_cond.notify()
                if st is None:
                    self._flush(pending)
                    self._read_once()
                    continue
                if t0:
                    assert plan is not None
                    if self._execute_inline(ex, st, plan, t0, loop, pending):
                        continue
                    self._flush(pending)
                    return None
                # Hand the socket to a follower, which reads (Ping, Cancel,
                # more work) while this thread runs the request.
                ex.reading = False
                rlock.release()
                return st
        except BaseException:
            if ex.reading:
                ex.reading = False
                rlock.release()
            raise

    def _flush(self, pending: list[bytes]) -> None:
        if pending:
            self.send(b"".join(pending) if len(pending) > 1 else pending[0])
            pending.clear()
        elif self.releases:
            self.send(b"")

    def _execute(
        self,
        ex: _Executor,
        st: Request,
        plan: Plan | None,
        loop: asyncio.AbstractEventLoop,
        pending: list[bytes],
    ) -> None:
        """Runs one taken request off the socket; held replies go out first,
        and its reply joins `pending`."""
        if pending and not st.cancelled:
            self._flush(pending)
        ex.current = st
        t0 = time.perf_counter()
        try:
            reply = self.run_request(st, plan, loop)
        except BaseException as e:
            reply = self.escaped(st, e)
        finally:
            ex.current = None
            with self.work_lock:
                self.owed += 1
                self._free_slot(st)
        if plan is not None:
            plan.fast = time.perf_counter() - t0 < _FAST_SECONDS
        if reply is not None:
            pending.append(reply)
        with self.work_lock:
            self.owed -= 1
        if len(pending) >= _MAX_BATCH:
            self._flush(pending)

    def _free_slot(self, st: Request) -> None:
        """Gives back what the finished request `st` held (under `work_lock`):
        its capacity slot, or, when it had given the slot back to wait on the
        host and a thread it started still waits, that waiter's count."""
        if st.slot:
            self.busy -= 1
        elif st.slot is False:
            self.released -= 1
        st.slot = None

    def _execute_inline(
        self,
        ex: _Executor,
        st: Request,
        plan: Plan,
        t0: float,
        loop: asyncio.AbstractEventLoop,
        pending: list[bytes],
    ) -> bool:
        """Runs one taken, known-quick request on the reader thread, its inline
        run started at `t0` (see _lead); its reply joins `pending` (sent in
        batches while quick requests keep coming). Returns whether this thread
        still holds the socket: if the run lasted longer than
        _INLINE_HANDOFF_SECONDS, the watch thread sent the held replies and
        released `rlock` for it while it ran. `ex.current` is set already."""
        try:
            reply = self.run_request(st, plan, loop)
        except BaseException as e:
            reply = self.escaped(st, e)
        finally:
            ex.current = None
            with self.work_lock:
                self.owed += 1
                self._free_slot(st)
                if self.inline_ex is ex:
                    self.inline_ex = None
                else:
                    # The watch thread took the socket (another thread may
                    # even be running inline by now).
                    ex.reading = False
        plan.fast = time.perf_counter() - t0 < _FAST_SECONDS
        if reply is not None:
            pending.append(reply)
        with self.work_lock:
            self.owed -= 1
        if len(pending) >= _MAX_BATCH:
            self._flush(pending)
        return ex.reading

    def _watch_main(self) -> None:
        """Hands the socket to a follower when an inline run lasts too long.

        Sleeps until an inline run starts; then wakes once per
        _INLINE_HANDOFF_SECONDS while inline runs keep starting, so quick calls
        cost it no wake-up each."""
        cond = self.watch_cond
        limit = _INLINE_HANDOFF_SECONDS
        clock = time.perf_counter
        while True:
            with cond:
                while True:
                    now = clock()
                    if self.inline_ex is not None:
                        left = self.inline_t0 + limit - now
                        if left <= 0:
                            break
                        cond.wait(left)
                    elif now - self.inline_last < _WATCH_LINGER_SECONDS:
                        cond.wait(limit)
                    else:
                        self.watch_idle = True
                        cond.wait()
                # The inline run has lasted too long.
                ex = self.inline_ex
                assert ex is not None
                held = self._end_inline_locked(ex)
            if held:
                self.send(b"".join(held))

    def _end_inline_locked(self, ex: _Executor) -> list[bytes]:
        """Takes the socket away from the inline run on `ex` (`self.inline_ex`)
        and releases `rlock` for a follower; returns the replies that thread
        held back, for the caller to send. Called with `work_lock` held, by the
        watch thread or by a thread of the running request about to wait on the
        host. The reading thread holds `rlock` and does not touch the socket,
        `buf` or its held replies until it takes `work_lock` after the run."""
        self.inline_ex = None
        held = ex.pending[:]
        ex.pending.clear()
        st = ex.current
        plan = self.plans.get(st.execute.tool) if st is not None else None
        if plan is not None:
            # As the run will when it ends: the next reader must not run this
            # tool inline as well.
            plan.fast = False
        self.rlock.release()
        return held

# ------------------------------------------------------------------ start-up


def _die(code: int, message: str) -> NoReturn:
    try:
        if message:
            sys.stderr.write(message)
        sys.stderr.flush()
        sys.stdout.flush()
    except Exception:
        pass
    os._exit(code)


def _on_sigint(signum: int, frame: Any) -> None:
    _die(EXIT_OK, "")


def _gil_enabled() -> bool:
    f = getattr(sys, "_is_gil_enabled", None)
    return bool(f()) if f is not None else True


def _hello(config: WorkerConfig, plans: dict[str, Any]) -> bytes:
    return _frames.hello(
        protocol_version=PROTOCOL_VERSION,
        pid=os.getpid(),
        python_version=platform.python_version(),
        python_implementation=platform.python_implementation(),
        gil_enabled=_gil_enabled(),
        profile=config.profile,
        capacity=config.capacity,
        adapter=config.adapter,
        bridge_version=__version__,
        max_frame_bytes=config.max_frame_bytes,
        tools=[plan.spec for plan in plans.values() if type(plan) is ToolPlan],  # not the FFI's operations
    )


def _startup_failed(
    sock: socket.socket,
    config: WorkerConfig,
    e: BaseException,
    what: str,
    *,
    details: dict[str, str] | None = None,
    with_traceback: bool = True,
) -> NoReturn:
    """Reports a start-up failure (an ERROR_KIND_STARTUP_FAILED frame with id 0) and exits with EXIT_STARTUP."""
    if with_traceback:
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        sys.stderr.write(f"snakepit worker: {what} {config.adapter!r}:\n{tb}")
    else:
        tb = ""
        sys.stderr.write(f"snakepit worker: {what} {config.adapter!r}: {type(e).__name__}: {e}\n")
    details = {"module": type(e).__module__, "adapter": config.adapter, **(details or {})}
    err = error_frame(
        0,
        pb.ERROR_KIND_STARTUP_FAILED,
        f"{what} {config.adapter!r}: {e}",
        python_type=type(e).__name__,
        tb=tb,
        details=details,
    )
    try:
        sock.sendall(err)
    except OSError:
        pass
    _die(EXIT_STARTUP, "")


def run(config: WorkerConfig) -> NoReturn:
    """Start the worker described by ``config``; never returns."""
    configure_logging()
    for d in reversed(config.python_path):
        sys.path.insert(0, d)
    try:
        sock = socket.socket(fileno=config.fd)
    except OSError as e:
        _die(EXIT_STARTUP, f"snakepit worker: fd {config.fd} is not a usable socket: {e}\n")
    if config.shm_host_fd >= 0:
        try:
            _shm.install(config.shm_host_fd, config.shm_worker_fd, config.shm_bytes, config.shm_threshold)
        except (OSError, ValueError) as e:
            _startup_failed(sock, config, e, "cannot map the shared-memory arenas for", with_traceback=False)
    try:
        cls = load_adapter(config.adapter)
        plans: dict[str, Plan] = {m.name: ToolPlan(cls, m) for m in tools_of(cls)}
        hello = _hello(config, plans)
    except BaseException as e:  # any start-up failure, SyntaxError and SystemExit included, is reported
        _startup_failed(sock, config, e, "failed to load adapter")
    try:
        check_profile(config.profile, cls)
    except ThreadSafetyError as e:
        _startup_failed(
            sock,
            config,
            e,
            "cannot run adapter",
            details={"reason": "not_thread_safe", "profile": config.profile, "class": class_name(cls)},
            with_traceback=False,
        )
    sys.setswitchinterval(0.0005)
    # A real SIGINT ends the worker, as it did when its KeyboardInterrupt
    # reached the top; a KeyboardInterrupt a tool raises is that request's error.
    signal.signal(signal.SIGINT, _on_sigint)
    worker = _Worker(config, sock, cls, plans)
    try:
        worker.runner.start_adapter()
    except BaseException as e:  # __init__ or initialize() of the shared instance failed
        _startup_failed(sock, config, e, "failed to start adapter")
    try:
        worker.runner.warmup()
    except BaseException as e:  # the worker never got ready: as a failed start
        _startup_failed(sock, config, e, "warmup() failed for adapter")
    worker.send_hello(hello)
    try:
        worker.serve()
    except KeyboardInterrupt:
        _die(EXIT_OK, "")
    except BaseException:
        _die(EXIT_PROTOCOL, f"snakepit worker: internal error:\n{traceback.format_exc()}")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of ``python -m snakepit_bridge.worker``."""
    run(parse_args(argv))

