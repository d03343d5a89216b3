"""Stream items by duck typing, and generators of tools served by execute_tool,
streamed or drained into one reply, through real worker processes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from snakepit_bridge._codec import decode
from snakepit_bridge._proto import snakepit_pb2 as pb
from wire_client import Shared, WorkerClient, start_worker

ADAPTER = "duck_stream_adapter.DuckStreamAdapter"


@pytest.fixture(scope="module")
def shared_duck() -> Iterator[Shared[WorkerClient]]:
    s = Shared(lambda: start_worker(ADAPTER))
    yield s
    s.close()


@pytest.fixture
def duck(shared_duck: Shared[WorkerClient]) -> WorkerClient:
    return shared_duck.live()


def stream(c: WorkerClient, tool: str, **kwargs: Any) -> list[pb.Chunk]:
    """Every chunk of a streamed call, up to and including the final one."""
    fid = c.execute(tool, stream=True, **kwargs)
    chunks: list[pb.Chunk] = []
    while True:
        f = c.reply(fid)
        assert f.WhichOneof("kind") == "chunk", f
        chunks.append(f.chunk)
        if f.chunk.is_final:
            return chunks


def values(chunks: list[pb.Chunk]) -> list[Any]:
    return [decode(c.value) for c in chunks if c.HasField("value")]


def test_an_adapters_own_chunk_class_controls_its_chunks(duck: WorkerClient) -> None:
    chunks = stream(duck, "own_chunks", n=3)
    assert values(chunks) == [{"index": 1, "total": 3}, {"index": 2, "total": 3}, {"index": 3, "total": 3}]
    assert [c.is_final for c in chunks] == [False, False, True]  # the item's is_final ends it: no closing chunk
    duck.recv_nothing(0.05)


def test_is_final_on_an_own_chunk_closes_the_generator(duck: WorkerClient) -> None:
    chunks = stream(duck, "final_early")
    assert values(chunks) == ["a", "b"] and chunks[-1].is_final
    assert "final_early" in duck.call("closed")


def test_dataclass_chunk_with_metadata(duck: WorkerClient) -> None:
    chunks = stream(duck, "tagged")
    assert values(chunks) == [{"x": 1}, {"x": 2}]
    assert [decode(c.metadata["stage"]) for c in chunks] == ["one", "two"]


def test_subclass_of_the_packages_stream_chunk(duck: WorkerClient) -> None:
    chunks = stream(duck, "subclassed")
    assert values(chunks) == ["s1", "s2"] and chunks[-1].is_final and len(chunks) == 2


def test_plain_items_envelopes_and_chunks_mix(duck: WorkerClient) -> None:
    chunks = stream(duck, "mixed")
    assert values(chunks) == [1, "two", [3], 4, 5]
    assert chunks[-1].is_final and not chunks[-1].HasField("value")


def test_own_chunks_unary_give_the_list_of_their_data(duck: WorkerClient) -> None:
    assert duck.call("own_chunks", n=2) == [{"index": 1, "total": 2}, {"index": 2, "total": 2}]
    assert duck.call("mixed") == [1, "two", [3], 4, 5]


def test_execute_tool_generator_streams(duck: WorkerClient) -> None:
    chunks = stream(duck, "dyn_count", n=4)
    assert values(chunks) == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]
    assert chunks[-1].is_final and len(chunks) == 4


def test_execute_tool_generator_unary_is_drained_into_a_list(duck: WorkerClient) -> None:
    assert duck.call("dyn_count", n=3) == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert duck.call("dyn_plain", x=1, session_id="s-1") == {
        "tool": "dyn_plain",
        "arguments": {"x": 1},
        "session": "s-1",
    }


def test_endless_generator_unary_fails_at_the_deadline(duck: WorkerClient) -> None:
    t0 = time.monotonic()
    f = duck.reply(duck.execute("dyn_forever", timeout_ms=300), timeout=5)
    elapsed = time.monotonic() - t0
    assert f.WhichOneof("kind") == "error", f
    assert f.error.kind == pb.ERROR_KIND_TIMEOUT
    assert f.error.python_type == "DrainDeadlineExceeded"
    assert "dyn_forever" in f.error.message and "stream" in f.error.message
    assert f.error.details["timeout_ms"] == "300" and int(f.error.details["items"]) > 0
    assert 0.25 <= elapsed < 3
    assert "dyn_forever" in duck.call("closed")  # the generator was closed
    assert duck.call("dyn_count", n=1) == [{"i": 0}]  # the worker serves on


def test_endless_async_generator_unary_fails_at_the_deadline(duck: WorkerClient) -> None:
    f = duck.reply(duck.execute("dyn_forever_async", timeout_ms=200), timeout=5)
    assert f.error.kind == pb.ERROR_KIND_TIMEOUT and f.error.python_type == "DrainDeadlineExceeded"


def test_async_generator_stalled_in_an_await_is_cut_at_the_deadline(duck: WorkerClient) -> None:
    t0 = time.monotonic()
    f = duck.reply(duck.execute("dyn_stalled_async", timeout_ms=200), timeout=5)
    assert f.error.kind == pb.ERROR_KIND_TIMEOUT and f.error.details["items"] == "1"
    assert time.monotonic() - t0 < 2
    assert "dyn_stalled_async" in duck.call("closed")


def test_endless_generator_unary_without_deadline_stops_at_the_frame_limit(
    spawn: Callable[..., WorkerClient],
) -> None:
    c = spawn(ADAPTER, extra_args=["--max-frame-bytes", "65536"])
    f = c.reply(c.execute("dyn_forever_text"), timeout=5)
    assert f.WhichOneof("kind") == "error", f
    assert f.error.kind == pb.ERROR_KIND_PAYLOAD_TOO_LARGE
    assert f.error.details["limit"] == "65536" and int(f.error.details["size"]) > 65536
    assert "stream" in f.error.message
    assert c.call("dyn_count", n=2) == [{"i": 0}, {"i": 1}]


def test_endless_execute_tool_generator_streams_until_cancelled(duck: WorkerClient) -> None:
    fid = duck.execute("dyn_forever", stream=True, window=5)
    assert [decode(duck.reply(fid).chunk.value) for _ in range(5)] == [0, 1, 2, 3, 4]
    duck.cancel(fid)
    assert duck.reply(fid).error.kind == pb.ERROR_KIND_CANCELLED


def test_unwrap_rules_in_process() -> None:
    from duck_stream_adapter import NotAChunk, StreamChunk2, TaggedChunk

    from snakepit_bridge import _runner

    unwrap = _runner._unwrap_item
    assert unwrap(StreamChunk2(1, True)) == (1, True, None)
    assert unwrap(TaggedChunk(2, False, {"m": 1})) == (2, False, {"m": 1})
    odd = NotAChunk()
    assert unwrap(odd) == (odd, False, None)
    assert unwrap({"data": 1, "is_final": True, "other": 2}) == ({"data": 1, "is_final": True, "other": 2}, False, None)
    assert unwrap(7) == (7, False, None)
