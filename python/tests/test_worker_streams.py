"""Streaming, credit-based flow control and cancellation."""

from __future__ import annotations

import time

from snakepit_bridge import _frames
from snakepit_bridge._codec import decode
from snakepit_bridge._proto import snakepit_pb2 as pb
from wire_client import WorkerClient


def test_stream_sends_seq_and_closing_chunk(showcase: WorkerClient) -> None:
    fid = showcase.execute("progress", steps=3, delay_ms=0, stream=True)
    chunks = [showcase.reply(fid).chunk for _ in range(4)]
    assert [c.seq for c in chunks] == [0, 1, 2, 3]
    assert [decode(c.value)["step"] for c in chunks[:3]] == [1, 2, 3]
    assert decode(chunks[2].value) == {"step": 3, "total": 3, "percent": 100.0}
    assert not any(c.is_final for c in chunks[:3])
    assert chunks[3].is_final and not chunks[3].HasField("value")


def test_envelope_dicts_and_stream_chunks(example: WorkerClient) -> None:
    fid = example.execute("process_with_progress", items=2, stream=True)
    a, b = example.reply(fid).chunk, example.reply(fid).chunk
    assert decode(a.value) == {"item": 1} and not a.is_final
    assert decode(b.value) == {"item": 2} and b.is_final and b.seq == 1
    fid = example.execute("chunks", count=2, stream=True)
    a, b = example.reply(fid).chunk, example.reply(fid).chunk
    assert decode(a.value) == {"index": 0} and decode(a.metadata["i"]) == 0
    assert b.is_final and decode(b.value) == {"index": 1}
    example.recv_nothing(0.1)


def test_generator_without_stream_returns_list(showcase: WorkerClient) -> None:
    r = showcase.call("progress", steps=2, delay_ms=0)
    assert [x["step"] for x in r] == [1, 2]


def test_plain_tool_with_stream_gives_one_final_chunk(showcase: WorkerClient) -> None:
    fid = showcase.execute("echo", message="x", stream=True)
    c = showcase.reply(fid).chunk
    assert c.seq == 0 and c.is_final and decode(c.value) == "x"


def test_credit_window_holds_the_generator(example: WorkerClient) -> None:
    fid = example.execute("endless", tag="window", stream=True, window=3)
    assert [example.reply(fid).chunk.seq for _ in range(3)] == [0, 1, 2]
    example.recv_nothing(0.2)  # window used up: the worker waits
    example.credit(fid, 2)
    assert [example.reply(fid).chunk.seq for _ in range(2)] == [3, 4]
    example.recv_nothing(0.1)
    example.cancel(fid)
    e = example.reply(fid).error
    assert e.kind == pb.ERROR_KIND_CANCELLED
    deadline = time.monotonic() + 2
    while "window" not in example.call("closed_streams"):
        assert time.monotonic() < deadline, "GeneratorExit never reached the generator"
        time.sleep(0.01)


def test_cancel_async_stream(example: WorkerClient) -> None:
    fid = example.execute("async_endless", tag="async", stream=True, window=2)
    assert [example.reply(fid).chunk.seq for _ in range(2)] == [0, 1]
    example.cancel(fid, reason="enough")
    e = example.reply(fid).error
    assert e.kind == pb.ERROR_KIND_CANCELLED and "enough" in e.message
    assert "async" in example.call("closed_streams")


def test_cancel_running_sleep(spawn) -> None:
    c = spawn()
    fid = c.execute("sleep", ms=5000)
    time.sleep(0.1)
    t0 = time.monotonic()
    c.cancel(fid)
    assert c.reply(fid).error.kind == pb.ERROR_KIND_CANCELLED
    # the cooperative sleep notices the flag, so the worker is free again quickly
    assert c.call("echo", message="after") == "after"
    assert time.monotonic() - t0 < 1.0


def test_cancel_sync_tool_sees_flag(example: WorkerClient) -> None:
    fid = example.execute("busy_wait_cancel", seconds=5)
    time.sleep(0.05)
    example.cancel(fid)
    assert example.reply(fid).error.kind == pb.ERROR_KIND_CANCELLED
    assert "busy-cancelled" in example.call("closed_streams")


def test_cancel_async_tool(spawn) -> None:
    c = spawn()
    fid = c.execute("async_sleep", ms=5000)
    time.sleep(0.05)
    c.cancel(fid)
    assert c.reply(fid).error.kind == pb.ERROR_KIND_CANCELLED
    assert c.call("noop") is None


def test_cancel_queued_request(spawn) -> None:
    c = spawn()
    running = c.execute("sleep", ms=300)
    queued = c.execute("echo", message="never")
    c.cancel(queued)
    f = c.recv()
    assert f.id == queued and f.error.kind == pb.ERROR_KIND_CANCELLED
    f = c.recv()
    assert f.id == running and decode(f.result.value) == 300
    c.recv_nothing(0.1)


def test_cancel_unknown_id_is_ignored(showcase: WorkerClient) -> None:
    showcase.cancel(987654)
    assert showcase.call("noop") is None


def test_ping_while_busy_reports_in_flight(spawn) -> None:
    c = spawn()
    fid = c.execute("sleep", ms=200)
    time.sleep(0.05)
    c.send(_frames.ping(500, 1))
    f = c.recv()
    assert f.id == 500 and f.pong.in_flight == 1
    assert decode(c.reply(fid).result.value) == 200
