"""The socket stays served while tools run: Ping, Cancel and new work are not
held up by a long tool, not even one that was quick so far (and so runs on the
thread that reads the socket). Also the fault-injection fixture adapter."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from snakepit_bridge import _frames
from snakepit_bridge._codec import decode, encode
from snakepit_bridge._proto import snakepit_pb2 as pb
from snakepit_bridge.session_context import SessionContext
from wire_client import PYTHON_DIR, WorkerClient

FIXTURES = PYTHON_DIR.parent / "tests" / "fixtures"
PROMPT = 0.5  # seconds within which the worker must answer while a tool runs

PROFILES = {
    "process": [],
    "thread": ["--profile", "thread", "--threads", "2"],
}


def ping(c: WorkerClient, fid: int) -> float:
    """Send a Ping; return the seconds until its Pong (frames of other ids are not expected)."""
    t0 = time.monotonic()
    c.send(_frames.ping(fid, time.time_ns()))
    f = c.reply(fid, timeout=PROMPT)
    assert f.WhichOneof("kind") == "pong", f
    return time.monotonic() - t0


def expect_cancelled(c: WorkerClient, fid: int) -> None:
    f = c.reply(fid, timeout=PROMPT)
    assert f.WhichOneof("kind") == "error" and f.error.kind == pb.ERROR_KIND_CANCELLED, f


def expect_result(c: WorkerClient, fid: int, value: object) -> None:
    f = c.reply(fid, timeout=PROMPT)
    assert f.WhichOneof("kind") == "result", f
    assert decode(f.result.value) == value


def replies(c: WorkerClient, *fids: int) -> dict[int, pb.Frame]:
    """The next frames, one per id in any order, each within PROMPT seconds."""
    got: dict[int, pb.Frame] = {}
    while len(got) < len(fids):
        f = c.recv(timeout=PROMPT)
        assert f.id in fids and f.id not in got, f
        got[f.id] = f
    return got


def make_quick(c: WorkerClient, tool: str) -> None:
    """Run `tool` with ms=0 a few times: it is then known to be quick, and the
    reader runs its next call itself, keeping the socket."""
    for _ in range(5):
        assert c.call(tool, ms=0) == 0


@pytest.mark.parametrize("tool", ["sleep", "async_sleep"])
@pytest.mark.parametrize("profile", list(PROFILES))
def test_quick_tool_turned_slow_keeps_socket_served(spawn: Callable[..., WorkerClient], profile: str, tool: str) -> None:
    c = spawn(extra_args=PROFILES[profile])
    make_quick(c, tool)
    t0 = time.monotonic()
    slow = c.execute(tool, ms=3000)

    pong_in = ping(c, 1000)
    assert pong_in < PROMPT

    if profile == "process":
        # Capacity 1: a new request waits for the busy slot; the socket is
        # still read (Pings answered), and cancelling the slow call frees it.
        queued = c.execute("echo", message="queued")
        c.recv_nothing(0.2)
        ping(c, 1001)
        c.cancel(slow, "test")
        got = replies(c, slow, queued)
        assert got[slow].error.kind == pb.ERROR_KIND_CANCELLED, got[slow]
        assert decode(got[queued].result.value) == "queued"
    else:
        # A free slot: the new request runs at once, next to the slow one.
        fresh = c.execute("echo", message="fresh")
        expect_result(c, fresh, "fresh")
        c.cancel(slow, "test")
        expect_cancelled(c, slow)
    assert time.monotonic() - t0 < 2.0

    # Back to normal: the same tool is quick again and everything works.
    make_quick(c, tool)
    ping(c, 1002)
    assert c.call("add", a=1, b=2) == 3


def test_held_reply_of_quick_call_is_sent_when_next_turns_slow(spawn: Callable[..., WorkerClient]) -> None:
    """Two requests in one read: the reply to the first quick one is held back
    while the second, also known to be quick, runs; it must not wait for the
    second's whole run once that one turns slow."""
    c = spawn()
    make_quick(c, "sleep")
    first, slow = c.new_id(), c.new_id()
    frames = [
        _frames.execute(first, "sleep", kwargs={"ms": encode(0)}),
        _frames.execute(slow, "sleep", kwargs={"ms": encode(3000)}),
    ]
    data = b"".join(_frames.encode(f) for f in frames)
    c.send_raw(data)
    expect_result(c, first, 0)
    ping(c, 1000)
    c.cancel(slow)
    expect_cancelled(c, slow)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_ping_answered_while_long_tool_runs(spawn: Callable[..., WorkerClient], profile: str) -> None:
    c = spawn(extra_args=PROFILES[profile])
    slow = c.execute("sleep", ms=3000)
    for i in range(3):
        assert ping(c, 1000 + i) < PROMPT
    c.send(_frames.ping(1010))
    f = c.reply(1010, timeout=PROMPT)
    assert f.pong.in_flight == 1
    c.cancel(slow)
    expect_cancelled(c, slow)


# ------------------------------------------------------------ faults fixture


def spawn_faults(spawn: Callable[..., WorkerClient]) -> WorkerClient:
    return spawn("faults.FaultsAdapter", extra_args=["--python-path", str(FIXTURES)])


def test_faults_fixture_tools(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn_faults(spawn)
    assert c.hello is not None
    names = {t.name for t in c.hello.hello.tools}
    assert names == {
        "pid",
        "spawn_grandchild",
        "hold_memory",
        "rss",
        "spin_gil",
        "wait_for_cancel",
        "async_wait_for_cancel",
        "sleep",
        "exit_now",
        "echo",
    }
    assert c.call("pid") == c.proc.pid == c.hello.hello.pid
    before = c.call("rss")
    assert before > 1 << 20
    after = c.call("hold_memory", mb=16)
    assert after - before >= 15 << 20
    assert c.call("rss") >= after - (1 << 20)
    assert c.call("sleep", ms=5) == 5
    assert c.call("echo", value={"a": [1, 2.5, "x"]}) == {"a": [1, 2.5, "x"]}
    assert c.call("wait_for_cancel", marker="/nonexistent/never-written", seconds=0.02) == "not cancelled"


def test_faults_fixture_cancel_markers(spawn: Callable[..., WorkerClient], tmp_path: Path) -> None:
    c = spawn_faults(spawn)
    for tool in ("wait_for_cancel", "async_wait_for_cancel"):
        marker = tmp_path / tool
        fid = c.execute(tool, marker=str(marker), seconds=5.0)
        # Wait until the request runs (a Pong counts it in flight) and one
        # more round trip, so the Cancel finds the tool started.
        deadline = time.monotonic() + 3
        while True:
            c.send(_frames.ping(900))
            if c.reply(900, timeout=PROMPT).pong.in_flight == 1:
                break
            assert time.monotonic() < deadline
        ping(c, 901)
        c.cancel(fid)
        expect_cancelled(c, fid)
        deadline = time.monotonic() + 3
        while not (marker.exists() and marker.read_text() == "cancelled"):
            assert time.monotonic() < deadline, f"{tool} wrote no marker"
            time.sleep(0.01)


def _faults_module():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(FIXTURES))
    try:
        import faults
    finally:
        sys.path.remove(str(FIXTURES))
    return faults


def test_faults_fixture_in_process(tmp_path: Path) -> None:
    faults = _faults_module()

    class Cancelled:
        cancelled = True

    a = faults.FaultsAdapter()
    a.set_session_context(SessionContext(_request=Cancelled()))
    marker = tmp_path / "sync"
    assert a.wait_for_cancel(str(marker), seconds=1.0) == "cancelled"
    assert marker.read_text() == "cancelled"

    async def cancel_async() -> None:
        task = asyncio.ensure_future(a.async_wait_for_cancel(str(tmp_path / "async"), seconds=5.0))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_async())
    assert (tmp_path / "async").read_text() == "cancelled"


def test_faults_spin_gil_holds_the_gil() -> None:
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    if not gil:
        pytest.skip("free-threaded build: there is no GIL to hold")
    faults = _faults_module()
    gaps: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
            time.sleep(0.001)

    t = threading.Thread(target=tick)
    t.start()
    try:
        ms = faults.FaultsAdapter().spin_gil(0.5)
    finally:
        stop.set()
        t.join()
    assert ms >= 500
    assert max(gaps) >= 0.4, f"another thread ran during the spin (longest pause {max(gaps):.3f}s)"
