"""A small synchronous client of the worker protocol, used by the tests.

It starts a real worker process on one end of a socketpair and speaks framed
protobuf to it, exactly as the host does.
"""

from __future__ import annotations

import collections
import itertools
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from snakepit_bridge import _frames
from snakepit_bridge._codec import decode, encode
from snakepit_bridge._proto import snakepit_pb2 as pb
from snakepit_bridge._wire import pack_len, unpack_len, varint  # varint: tests build frames with it

PYTHON_DIR = Path(__file__).resolve().parent.parent
TESTS_DIR = Path(__file__).resolve().parent


# Ids of the Pings that check a shared worker, far from the ids tests use.
_HEALTH_PING_IDS = itertools.count((1 << 62) + 1)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, built by hand."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


class WorkerClient:
    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.proc = proc
        self.sock = sock
        self.buf = bytearray()
        self.next_id = 1
        self.hello: pb.Frame | None = None
        # Per-item chunks of a run frame not returned yet.
        self.unrun: collections.deque[pb.Frame] = collections.deque()
        # Requests sent with `execute` whose final reply has not arrived.
        self.pending: set[int] = set()

    # -------------------------------------------------------------- raw I/O

    def send(self, frame: pb.Frame) -> None:
        self.sock.sendall(_frames.encode(frame))

    def send_raw(self, data: bytes) -> None:
        """Send `data` as it is (length prefix included, or deliberately wrong)."""
        self.sock.sendall(data)

    def send_body(self, body: bytes) -> None:
        """Send frame body `body` (one protobuf would refuse, say) with its length prefix."""
        self.sock.sendall(pack_len(len(body)) + body)

    def recv(self, timeout: float = 5.0) -> pb.Frame:
        """The next frame; a Chunk carrying a run of items comes as one
        Chunk frame per item, as the host hands them on (`recv_raw` keeps it)."""
        if self.unrun:
            return self.unrun.popleft()
        f = self.recv_raw(timeout)
        if f.WhichOneof("kind") == "chunk" and f.chunk.run:
            for i, v in enumerate(f.chunk.run):
                one = pb.Frame(id=f.id)
                one.chunk.seq = f.chunk.seq + i
                one.chunk.value.CopyFrom(v)
                self.unrun.append(one)
            return self.unrun.popleft()
        return f

    def recv_raw(self, timeout: float = 5.0) -> pb.Frame:
        """The next frame as the worker wrote it."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                (n,) = unpack_len(self.buf, 0)
                if len(self.buf) >= 4 + n:
                    body = bytes(self.buf[4 : 4 + n])
                    del self.buf[: 4 + n]
                    f = pb.Frame.FromString(body)
                    kind = f.WhichOneof("kind")
                    if kind in ("result", "error") or (kind == "chunk" and f.chunk.is_final):
                        self.pending.discard(f.id)
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the worker in time")
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise EOFError("worker closed the connection")
                self.buf += data

    def recv_nothing(self, within: float) -> None:
        """Assert no frame arrives within `within` seconds."""
        try:
            f = self.recv(timeout=within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame: {f}")

    # ------------------------------------------------------------ requests

    def new_id(self) -> int:
        i = self.next_id
        self.next_id += 1
        return i

    def execute(
        self,
        tool: str,
        *args: Any,
        stream: bool = False,
        window: int = 0,
        session_id: str = "",
        metadata: dict[str, str] | None = None,
        raw_kwargs: dict[str, pb.Value] | None = None,
        timeout_ms: int = 0,
        **kwargs: Any,
    ) -> int:
        fid = self.new_id()
        self.pending.add(fid)
        encoded = {k: encode(v) for k, v in kwargs.items()}
        encoded.update(raw_kwargs or {})
        self.send(
            _frames.execute(
                fid,
                tool,
                args=[encode(a) for a in args],
                kwargs=encoded,
                session_id=session_id,
                stream=stream,
                stream_window=window,
                metadata=metadata,
                timeout_ms=timeout_ms,
            )
        )
        return fid

    def execute_batch(
        self,
        tool: str,
        calls: Iterable[dict[str, Any] | pb.BatchCall],
        *,
        session_id: str = "",
        metadata: dict[str, str] | None = None,
        stream: bool = False,
    ) -> int:
        """Send one Execute carrying a batch: each call a dict of keyword
        arguments (encoded here) or a BatchCall as it is."""
        fid = self.new_id()
        self.pending.add(fid)
        batch = [
            c if isinstance(c, pb.BatchCall) else pb.BatchCall(kwargs={k: encode(v) for k, v in c.items()})
            for c in calls
        ]
        self.send(
            _frames.execute(fid, tool, session_id=session_id, metadata=metadata, stream=stream, batch=batch)
        )
        return fid

    def reply(self, fid: int, timeout: float = 5.0) -> pb.Frame:
        f = self.recv(timeout)
        assert f.id == fid, f"expected a reply to {fid}, got {f}"
        return f

    def call_frame(self, tool: str, *args: Any, **kwargs: Any) -> pb.Frame:
        return self.reply(self.execute(tool, *args, **kwargs))

    def call(self, tool: str, *args: Any, **kwargs: Any) -> Any:
        f = self.call_frame(tool, *args, **kwargs)
        if f.WhichOneof("kind") != "result":
            raise AssertionError(f"expected a result, got {f}")
        return decode(f.result.value)

    def cancel(self, fid: int, reason: str = "") -> None:
        self.send(_frames.cancel(fid, reason))

    def credit(self, fid: int, chunks: int) -> None:
        self.send(_frames.credit(fid, chunks))

    # ------------------------------------------------------------- process

    def healthy(self, timeout: float = 2.0) -> bool:
        """Whether the worker can serve another test as a new one would:
        running, connected, every request sent with `execute` answered,
        nothing received and unread, and a Ping answered first, promptly and
        with nothing in flight."""
        if self.proc.poll() is not None or self.sock.fileno() < 0:
            return False
        if self.pending or self.buf or self.unrun:
            return False
        fid = next(_HEALTH_PING_IDS)
        try:
            self.send(_frames.ping(fid))
            f = self.recv_raw(timeout)
        except Exception:  # a closed socket, no answer in time, or a frame protobuf refuses
            return False
        return f.id == fid and f.WhichOneof("kind") == "pong" and f.pong.in_flight == 0

    def wait_exit(self, timeout: float = 5.0) -> int:
        return self.proc.wait(timeout=timeout)

    def stderr_text(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            if self.proc.poll() is None:
                try:
                    self.proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            if self.proc.stderr is not None:
                self.proc.stderr.close()


class Servable(Protocol):
    """What a :class:`Shared` hands out: a worker (or something around one)."""

    def healthy(self) -> bool: ...

    def close(self) -> None: ...


S = TypeVar("S", bound=Servable)


class Shared(Generic[S]):
    """A worker shared by the tests of a module or session, handed to each
    test live: one that a previous test left dead, disconnected, with a
    request unanswered or a frame unread is closed and replaced by a new one,
    so that a failing test never breaks the tests after it."""

    def __init__(self, start: Callable[[], S]) -> None:
        self._start = start
        self._current: S | None = None
        #: How many times a broken worker was replaced.
        self.replaced = 0

    def live(self) -> S:
        """The shared worker, started or replaced as needed."""
        current = self._current
        if current is not None:
            if current.healthy():
                return current
            self._current = None
            self.replaced += 1
            current.close()
        self._current = self._start()
        return self._current

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None


class ConcurrentClient:
    """Lets many threads use one worker at once, as the host does.

    A reader thread routes each final reply to the caller waiting for its id
    and keeps telemetry frames (in arrival order) for :meth:`wait_telemetry`.
    """

    def __init__(self, client: WorkerClient) -> None:
        self.client = client
        self.send_lock = threading.Lock()
        self.cond = threading.Condition()
        self.waiters: dict[int, Future[pb.Frame]] = {}
        self.telemetry: list[pb.Frame] = []
        self.closed = False
        self.error: BaseException | None = None
        self.reader = threading.Thread(target=self._read, name="test-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while not self.closed:
            try:
                f = self.client.recv(timeout=0.1)
            except TimeoutError:
                continue
            except BaseException as e:  # EOF or a broken socket: fail every waiter
                with self.cond:
                    self.error = e
                    waiters = list(self.waiters.values())
                    self.waiters.clear()
                    self.cond.notify_all()
                for w in waiters:
                    w.set_exception(e)
                return
            if f.WhichOneof("kind") == "telemetry":
                with self.cond:
                    self.telemetry.append(f)
                    self.cond.notify_all()
                continue
            with self.cond:
                w = self.waiters.pop(f.id, None)
            if w is not None:
                w.set_result(f)

    def submit(self, tool: str, *args: Any, **kwargs: Any) -> Future[pb.Frame]:
        """Send an Execute; the future gets its final reply frame."""
        fut: Future[pb.Frame] = Future()
        with self.send_lock:
            fid = self.client.next_id
            with self.cond:
                self.waiters[fid] = fut
            assert self.client.execute(tool, *args, **kwargs) == fid
        return fut

    def submit_raw(self, build: Callable[[int], bytes]) -> Future[pb.Frame]:
        """Send the frame body `build(id)` makes for a new request id (a frame
        protobuf would refuse to build); the future gets its final reply."""
        fut: Future[pb.Frame] = Future()
        with self.send_lock:
            fid = self.client.new_id()
            with self.cond:
                self.waiters[fid] = fut
            self.client.send_body(build(fid))
        return fut

    def call(self, tool: str, *args: Any, timeout: float = 5.0, **kwargs: Any) -> Any:
        """Call a tool from any thread and return its decoded result."""
        f = self.submit(tool, *args, **kwargs).result(timeout)
        if f.WhichOneof("kind") != "result":
            raise AssertionError(f"expected a result, got {f}")
        return decode(f.result.value)

    def wait_telemetry(self, predicate: Callable[[pb.Frame], bool], count: int = 1, timeout: float = 5.0) -> list[pb.Frame]:
        """The first `count` telemetry frames matching `predicate`, waiting for them up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [f for f in self.telemetry if predicate(f)]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None:
                    raise TimeoutError(f"{len(found)} of {count} telemetry frames arrived")
                self.cond.wait(left)

    def close(self) -> None:
        self.closed = True
        self.reader.join(timeout=2)


def start_worker(
    adapter: str = "snakepit_bridge.showcase.ShowcaseAdapter",
    *,
    extra_args: Iterable[str] = (),
    read_hello: bool = True,
    use_default_fd: bool = False,
    extra_fds: Iterable[int] = (),
    python_path: Iterable[str] = (),
) -> WorkerClient:
    """A worker serving `adapter` on one end of a socketpair; `python_path`
    goes on its PYTHONPATH after the package's directory."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PYTHON_DIR), *python_path, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, "-m", "snakepit_bridge.worker", "--adapter", adapter]
    cmd += ["--python-path", str(TESTS_DIR)]
    if use_default_fd:
        child_fd = child.fileno()

        def dup_to_3() -> None:
            os.dup2(child_fd, 3)

        proc = subprocess.Popen(
            cmd + list(extra_args),
            env=env,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            close_fds=False,
            preexec_fn=dup_to_3,
        )
    else:
        cmd += ["--fd", str(child.fileno())]
        proc = subprocess.Popen(
            cmd + list(extra_args),
            env=env,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(child.fileno(), *extra_fds),
        )
    child.close()
    client = WorkerClient(proc, parent)
    if read_hello:
        f = client.recv(timeout=20)
        if f.WhichOneof("kind") != "hello":
            client.close()
            raise AssertionError(f"expected hello, got {f}")
        client.hello = f
    return client
