"""Process-level behaviour: start-up failures, protocol violations, EOF, shutdown, limits, profiles."""

from __future__ import annotations

import struct
import time

import pytest

from snakepit_bridge import _frames
from snakepit_bridge._codec import decode
from snakepit_bridge._proto import snakepit_pb2 as pb
from wire_client import start_worker


@pytest.mark.parametrize(
    ("adapter", "python_type"),
    [
        ("no_such_module_anywhere.Adapter", "ModuleNotFoundError"),
        ("broken_adapter_syntax.Adapter", "SyntaxError"),
        ("example_adapter.Missing", "AttributeError"),
        ("example_adapter.NOT_A_CLASS", "TypeError"),
        ("noDotHere", "ValueError"),
    ],
)
def test_startup_failure_reports_and_exits_3(adapter: str, python_type: str) -> None:
    c = start_worker(adapter, read_hello=False)
    try:
        f = c.recv(timeout=20)
        assert f.id == 0 and f.WhichOneof("kind") == "error"
        assert f.error.kind == pb.ERROR_KIND_STARTUP_FAILED
        assert f.error.python_type == python_type
        assert adapter in f.error.message
        assert "Traceback" in f.error.traceback
        assert c.wait_exit() == 3
        assert "Traceback" in c.stderr_text()
    finally:
        c.close()


def test_default_fd_is_3(spawn) -> None:
    c = spawn(use_default_fd=True)
    assert c.call("echo", message="fd3") == "fd3"


def test_garbage_frame_is_skipped_and_the_worker_serves_on(spawn) -> None:
    # Its length says where the next frame starts, so only this one is lost.
    c = spawn()
    c.send_raw(struct.pack(">I", 10) + b"\xff" * 10)
    assert c.call("echo", message="still here") == "still here"
    c.sock.close()
    assert c.wait_exit() == 0
    assert "skipping an undecodable" in c.stderr_text()


def test_oversized_length_prefix_exits_2_without_waiting(spawn) -> None:
    c = spawn(extra_args=["--max-frame-bytes", "4096"])
    t0 = time.monotonic()
    c.send_raw(struct.pack(">I", 0xFFFFFFF0))
    assert c.wait_exit(timeout=5) == 2
    assert time.monotonic() - t0 < 2
    assert "exceeds max_frame_bytes" in c.stderr_text()


def test_eof_makes_worker_exit_even_when_busy(spawn) -> None:
    c = spawn()
    c.execute("sleep", ms=10_000)
    time.sleep(0.05)
    c.sock.close()
    assert c.wait_exit(timeout=3) == 0


def test_oversized_reply_is_payload_too_large(spawn) -> None:
    c = spawn("example_adapter.ExampleAdapter", extra_args=["--max-frame-bytes", "4096"])
    assert c.hello is not None and c.hello.hello.max_frame_bytes == 4096
    e = c.call_frame("big", n=10_000).error
    assert e.kind == pb.ERROR_KIND_PAYLOAD_TOO_LARGE
    assert len(c.call("big", n=1000)) == 1000


def test_shutdown_finishes_running_work_then_exits_0(spawn) -> None:
    c = spawn()
    fid = c.execute("sleep", ms=150)
    time.sleep(0.02)
    c.send(_frames.shutdown(0, grace_ms=2000))
    late = c.execute("noop")
    f = c.recv()
    assert f.id == late and f.error.kind == pb.ERROR_KIND_SHUTTING_DOWN
    assert decode(c.reply(fid).result.value) == 150
    assert c.wait_exit(timeout=3) == 0


def test_shutdown_loses_no_reply_of_work_received_before_it(spawn) -> None:
    # A finished run gives its slot back before its reply goes out (replies
    # are held and sent in batches): shutdown waits for the replies too, not
    # only for the runs. The race is narrow; this checks the invariant under
    # many requests ending as the shutdown arrives.
    for _ in range(8):
        c = spawn()
        fids = [c.execute("noop") for _ in range(40)]
        c.send(_frames.shutdown(0, grace_ms=2000))
        got = {c.recv().id for _ in fids}
        assert got == set(fids)
        assert c.wait_exit(timeout=3) == 0


def test_shutdown_grace_expiry(spawn) -> None:
    c = spawn()
    fid = c.execute("sleep", ms=10_000)
    time.sleep(0.02)
    t0 = time.monotonic()
    c.send(_frames.shutdown(0, grace_ms=100))
    assert c.reply(fid).error.kind == pb.ERROR_KIND_SHUTTING_DOWN
    assert c.wait_exit(timeout=3) == 0
    assert time.monotonic() - t0 < 2


def test_thread_profile_runs_requests_in_parallel(spawn) -> None:
    c = spawn(extra_args=["--profile", "thread", "--threads", "4"])
    assert c.hello is not None
    assert c.hello.hello.profile == "thread" and c.hello.hello.capacity == 4
    t0 = time.monotonic()
    ids = [c.execute("sleep", ms=100) for _ in range(4)]
    got = {c.recv().id for _ in ids}
    elapsed = time.monotonic() - t0
    assert got == set(ids)
    assert elapsed < 0.3, f"4 x 100 ms sleeps took {elapsed:.3f}s"


def test_process_profile_runs_requests_one_at_a_time(spawn) -> None:
    c = spawn()
    t0 = time.monotonic()
    ids = [c.execute("sleep", ms=50) for _ in range(3)]
    assert [c.recv().id for _ in ids] == ids
    assert time.monotonic() - t0 >= 0.15
