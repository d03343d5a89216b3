"""The adapters under snakepit_bridge.adapters, the old showcase path, and the
thin modules configurations name (heartbeat, zero_copy), run by real workers."""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from snakepit_bridge._codec import decode
from snakepit_bridge._proto import snakepit_pb2 as pb
from wire_client import ConcurrentClient, WorkerClient

SHOWCASE = "snakepit_bridge.adapters.showcase.ShowcaseAdapter"
THREADED = "snakepit_bridge.adapters.threaded_showcase.ThreadedShowcaseAdapter"
TEMPLATE = "snakepit_bridge.adapters.template.TemplateAdapter"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_module_paths_resolve_and_the_old_showcase_path_is_the_same_class() -> None:
    from snakepit_bridge import adapters, showcase
    from snakepit_bridge.adapters.showcase import ShowcaseAdapter
    from snakepit_bridge.adapters.showcase.tool import StreamChunk
    from snakepit_bridge.adapters.template import TemplateAdapter
    from snakepit_bridge.adapters.threaded_showcase import ThreadedShowcaseAdapter

    assert showcase.ShowcaseAdapter is ShowcaseAdapter is adapters.ShowcaseAdapter
    assert adapters.TemplateAdapter is TemplateAdapter and adapters.ThreadedShowcaseAdapter is ThreadedShowcaseAdapter
    assert StreamChunk(1).is_final is False and StreamChunk(1, True).data == 1
    for module in ("snakepit_bridge.adapters", "snakepit_bridge.adapters.showcase", "snakepit_bridge.heartbeat"):
        mod = importlib.import_module(module)
        assert mod.__doc__ and all(hasattr(mod, n) for n in mod.__all__)


def test_zero_copy_ref_imports() -> None:
    from snakepit_bridge.zero_copy import ZeroCopyRef

    assert callable(ZeroCopyRef)


# ------------------------------------------------------------ showcase


def test_showcase_process_text_as_configured_by_its_new_path(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn(SHOWCASE)
    assert c.hello is not None and c.hello.hello.adapter == SHOWCASE
    assert c.call("process_text", text="Hello", operation="upper") == {
        "original": "Hello",
        "operation": "upper",
        "result": "HELLO",
    }
    assert c.call("process_text", text="Hello", operation="lower")["result"] == "hello"
    assert c.call("process_text", text="Hello", operation="reverse")["result"] == "olleH"
    assert c.call("process_text", text="Hello", operation="length")["result"] == 5
    assert c.call("process_text", text="Hello")["result"] == "HELLO"  # upper by default
    f = c.call_frame("process_text", text="Hello", operation="shout")
    assert f.error.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and f.error.python_type == "ValueError"
    assert "upper" in f.error.message
    spec = next(t for t in c.hello.hello.tools if t.name == "process_text")
    assert spec.description.startswith("Apply an operation to a text")
    assert [(p.name, p.type, p.required) for p in spec.parameters] == [
        ("text", "str", True),
        ("operation", "str", False),
    ]
    # What the old showcase had is still there.
    assert c.call("echo", message="hi") == "hi" and c.call("add", a=1, b=2) == 3
    assert c.call("progress", steps=2, delay_ms=0)[1]["step"] == 2


def test_showcase_streams_its_own_chunk_class(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn(SHOWCASE)
    fid = c.execute("stream_items", count=3, stream=True)
    chunks = [c.reply(fid).chunk for _ in range(3)]
    assert [decode(ch.value) for ch in chunks] == [{"index": i, "value": f"Item {i}"} for i in (1, 2, 3)]
    assert [ch.is_final for ch in chunks] == [False, False, True]
    assert [decode(ch.metadata["remaining"]) for ch in chunks] == [2, 1, 0]
    c.recv_nothing(0.05)
    assert c.call("stream_items", count=2) == [{"index": 1, "value": "Item 1"}, {"index": 2, "value": "Item 2"}]


def test_showcase_telemetry_span_and_event(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn(SHOWCASE)
    fid = c.execute("traced_compute", n=10, metadata={"traceparent": TRACEPARENT})
    frames: list[pb.Frame] = []
    while True:
        f = c.reply(fid)
        if f.WhichOneof("kind") != "telemetry":
            break
        frames.append(f)
    assert decode(f.result.value) == {"n": 10, "sum_of_squares": 285}
    names = [t.telemetry.name for t in frames]
    assert names == ["showcase.traced_compute", "showcase.computed"]
    span, event = frames[0].telemetry, frames[1].telemetry
    assert span.duration_nanos > 0 and span.measurements["items"] == 10.0
    assert decode(span.metadata["n"]) == 10 and decode(span.metadata["status"]) == "ok"
    assert decode(span.metadata["traceparent"]) == TRACEPARENT
    assert event.measurements["n"] == 10.0 and decode(event.metadata["tool"]) == "traced_compute"


def test_showcase_sessions(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn(SHOWCASE)
    info = c.call("session_info", session_id="sess-1", metadata={"k": "v"})
    assert info == {"session_id": "sess-1", "context_session_id": "sess-1", "metadata": {"k": "v"}}
    assert [c.call("tally", n=2, session_id="sess-1") for _ in range(2)] == [2, 4]
    assert c.call("tally", n=1, session_id="sess-2") == 1


@pytest.mark.skipif(
    importlib.util.find_spec("snakepit_bridge.serialization") is None,
    reason="results with to_dict() cross once graceful serialization is in the package",
)
def test_showcase_to_dict_result(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn(SHOWCASE)
    assert c.call("text_stats", text="the cat and the hat") == {
        "characters": 19,
        "words": 5,
        "lines": 1,
        "most_common": "the",
    }


def test_showcase_text_stats_object_in_process() -> None:
    from snakepit_bridge.adapters.showcase import ShowcaseAdapter, TextStats

    stats = ShowcaseAdapter().text_stats("a b a\nc")
    assert isinstance(stats, TextStats)
    assert stats.to_dict() == {"characters": 7, "words": 4, "lines": 2, "most_common": "a"}


# ------------------------------------------------------------ template


def test_template_adapter_tools(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn(TEMPLATE)
    assert c.call("hello") == "Hello, world!"
    assert c.call("hello", name="snakepit") == "Hello, snakepit!"
    assert c.call("add", a=2, b=0.5) == 2.5
    fid = c.execute("count", n=3, stream=True)
    got = [c.reply(fid).chunk for _ in range(4)]
    assert [decode(ch.value) for ch in got[:3]] == [1, 2, 3] and got[3].is_final
    assert c.call("whoami", session_id="s-9") == {"session_id": "s-9", "metadata": {}}
    spec = next(t for t in c.hello.hello.tools if t.name == "hello")
    assert spec.description == "Greet someone by name"


# ------------------------------------------------------------ threaded showcase


def test_threaded_showcase_in_the_thread_profile(
    spawn: Callable[..., WorkerClient],
) -> None:
    m = ConcurrentClient(spawn(THREADED, extra_args=["--profile", "thread", "--threads", "4"]))
    try:
        hello = m.client.hello.hello
        assert hello.profile == "thread" and hello.capacity == 4
        with ThreadPoolExecutor(max_workers=8) as ex:
            results = list(ex.map(lambda i: m.call("compute_intensive", data=[1.0, 2.0, float(i)]), range(40)))
        assert sorted(r["request_number"] for r in results) == list(range(1, 41))
        assert all(r["result"] == (5.0 + i * i) * 2.0 for i, r in enumerate(results))

        first = m.call("cached_compute", key="k", data=[2.0, 4.0])
        assert first == {"result": 2.0, "cached": False}
        again = [m.call("cached_compute", key="k", data=[2.0, 4.0]) for _ in range(12)]
        assert all(r["result"] == 2.0 for r in again) and any(r["cached"] for r in again)

        calls = [m.call("thread_calls") for _ in range(10)]
        per_thread: dict[str, int] = {}
        for r in calls:
            per_thread[r["thread"]] = per_thread.get(r["thread"], 0) + 1
            assert r["calls_on_this_thread"] == per_thread[r["thread"]]

        batch = m.call("process_batch", items=[1.0, 2.0, 3.0])
        assert batch["processed"] == 3 and batch["doubled"] == [2.0, 4.0, 6.0]
        nums = batch["request_numbers"]
        assert nums == sorted(nums) and len(set(nums)) == 3

        stats = m.call("get_thread_stats")
        assert stats["adapter_class"] == "ThreadedShowcaseAdapter" and stats["thread_safe"] is True
        assert stats["requests_by_method"]["compute_intensive"] == 40
        assert stats["requests_by_method"]["batch_item"] == 3
        assert stats["total_items"] == 40 * 3 + 3 and stats["results"] == 40
        assert stats["tracker"]["total_requests"] == stats["total_requests"]
        assert stats["tracker"]["active_requests"] == 1  # this call
        assert sum(stats["thread_utilization"].values()) == stats["total_requests"]
        assert stats["max_concurrent_requests"] >= 1 and stats["errors"] == 0

        tracker = m.call("tracker_stats")
        assert tracker["total_requests"] == stats["total_requests"]  # get_thread_stats counted itself
        assert tracker["active_requests"] == 0 and 1 <= tracker["threads_seen"] <= 5
        assert m.call("reset") == {"dropped": 40}

        first = m.submit("stream_progress", steps=3, stream=True).result(5)
        assert decode(first.chunk.value)["step"] == 1 and decode(first.chunk.value)["total"] == 3
    finally:
        m.close()


def test_threaded_showcase_hammered_in_process() -> None:
    from snakepit_bridge.adapters.threaded_showcase import ThreadedShowcaseAdapter

    adapter = ThreadedShowcaseAdapter()
    barrier = threading.Barrier(8)

    def hammer(i: int) -> list[Any]:
        barrier.wait()
        return [adapter.compute_intensive([float(i)]) for _ in range(50)]

    with ThreadPoolExecutor(max_workers=8) as ex:
        out = [r for rs in ex.map(hammer, range(8)) for r in rs]
    assert sorted(r["request_number"] for r in out) == list(range(1, 401))
    assert adapter.total_items == 400
    assert adapter._tracker.get_stats()["total_requests"] == 400
    assert adapter.get_stats()["threads_seen"] == 8


# ------------------------------------------------------------ heartbeat


def test_heartbeat_config_spellings_and_detection_time() -> None:
    from snakepit_bridge.heartbeat import HeartbeatConfig

    default = HeartbeatConfig()
    assert default.to_pool_config() == {"enabled": True, "interval_ms": 2000, "timeout_ms": 2000, "max_missed": 3}
    assert default.detection_time_ms() == 3 * 2000 + 2000
    hb = HeartbeatConfig.from_mapping({"enabled": True, "ping_interval_ms": 5000, "timeout_ms": 15000})
    assert hb == HeartbeatConfig.from_mapping({"interval_ms": 5000, "timeout_ms": 15000})
    assert hb.detection_time_ms() == 3 * 15000 + 5000
    assert HeartbeatConfig.from_mapping({"max_missed": 2}).max_missed_heartbeats == 2
    assert HeartbeatConfig(enabled=False).detection_time_ms() is None
    with pytest.raises(ValueError, match="initial_delay_ms is not supported"):
        HeartbeatConfig.from_mapping({"initial_delay_ms": 10, "dependent": True})
    with pytest.raises(ValueError, match="pings"):
        HeartbeatConfig.from_mapping({"pings": 1})
    with pytest.raises(ValueError, match="at least 1"):
        HeartbeatConfig(timeout_ms=0)
