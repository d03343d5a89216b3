"""The telemetry API: emit/span signatures, correlation ids, backends, and the host's id reaching a real worker's tools."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import types
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from wire_client import Shared, WorkerClient, start_worker

from snakepit_bridge import telemetry
from snakepit_bridge._codec import decode
from snakepit_bridge._context import current_request
from snakepit_bridge._proto import snakepit_pb2 as pb

H = telemetry.CORRELATION_HEADER
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Recorder:
    """A backend that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, float], dict[str, Any], str | None, int]] = []

    def emit(
        self,
        event: str,
        measurements: dict[str, float],
        metadata: dict[str, Any],
        correlation_id: str | None,
        duration_nanos: int,
    ) -> None:
        self.events.append((event, measurements, metadata, correlation_id, duration_nanos))

    def by_name(self) -> dict[str, tuple[str, dict[str, float], dict[str, Any], str | None, int]]:
        return {e[0]: e for e in self.events}


class Scope:
    """A stand-in for the request the worker makes current."""

    def __init__(self, fid: int, metadata: dict[str, str]) -> None:
        self.id = fid
        self.metadata = types.MappingProxyType(metadata)
        self.shared = None
        self.context = None


@pytest.fixture
def rec() -> Iterator[Recorder]:
    r = Recorder()
    telemetry.set_backend(r)
    try:
        yield r
    finally:
        telemetry.set_backend(None)


@pytest.fixture(autouse=True)
def _fresh_context() -> Iterator[None]:
    # Each test starts with no id set, whatever an earlier test left in this thread's context.
    token = telemetry.set_correlation_id(None)
    telemetry.reset_correlation_id()
    yield
    telemetry.reset_correlation_id(token)


def in_scope(scope: Scope, fn: Callable[[], Any]) -> Any:
    def run() -> Any:
        current_request.set(scope)  # type: ignore[arg-type]
        return fn()

    return contextvars.copy_context().run(run)


# ------------------------------------------------------------- correlation ids


def test_new_correlation_id_is_a_fresh_uuid4() -> None:
    a, b = telemetry.new_correlation_id(), telemetry.new_correlation_id()
    assert a != b
    assert str(uuid.UUID(a)) == a and uuid.UUID(a).version == 4


def test_set_get_reset() -> None:
    assert telemetry.CORRELATION_HEADER == "x-snakepit-correlation-id"
    assert telemetry.get_correlation_id() is None
    outer = telemetry.set_correlation_id("one")
    assert telemetry.get_correlation_id() == "one"
    inner = telemetry.set_correlation_id("two")
    assert telemetry.get_correlation_id() == "two"
    telemetry.reset_correlation_id(inner)
    assert telemetry.get_correlation_id() == "one"
    telemetry.reset_correlation_id(outer)
    assert telemetry.get_correlation_id() is None
    telemetry.set_correlation_id("three")
    telemetry.reset_correlation_id()
    assert telemetry.get_correlation_id() is None


def test_the_documented_sequence() -> None:
    correlation_id = telemetry.new_correlation_id()
    telemetry.set_correlation_id(correlation_id)
    assert telemetry.get_correlation_id() == correlation_id
    telemetry.reset_correlation_id()
    assert telemetry.get_correlation_id() is None


def test_threads_and_tasks_do_not_mix_ids() -> None:
    barrier = threading.Barrier(4, timeout=5)
    seen: dict[str, str | None] = {}

    def worker(cid: str) -> None:
        telemetry.set_correlation_id(cid)
        barrier.wait()
        seen[cid] = telemetry.get_correlation_id()

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {f"t{i}": f"t{i}" for i in range(4)}
    assert telemetry.get_correlation_id() is None

    async def task(cid: str) -> str | None:
        telemetry.set_correlation_id(cid)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return telemetry.get_correlation_id()

    async def main() -> list[str | None]:
        return list(await asyncio.gather(*(task(f"a{i}") for i in range(5))))

    assert asyncio.run(main()) == [f"a{i}" for i in range(5)]


def test_a_request_s_id_comes_from_its_metadata() -> None:
    assert in_scope(Scope(1, {H: "from-host"}), telemetry.get_correlation_id) == "from-host"
    assert in_scope(Scope(2, {}), telemetry.get_correlation_id) is None
    assert in_scope(Scope(3, {H: ""}), telemetry.get_correlation_id) is None

    def override() -> list[str | None]:
        seen = [telemetry.get_correlation_id()]
        token = telemetry.set_correlation_id("mine")
        seen.append(telemetry.get_correlation_id())
        telemetry.reset_correlation_id(token)
        seen.append(telemetry.get_correlation_id())
        telemetry.set_correlation_id(None)
        seen.append(telemetry.get_correlation_id())
        telemetry.reset_correlation_id()
        seen.append(telemetry.get_correlation_id())
        return seen

    assert in_scope(Scope(4, {H: "host"}), override) == ["host", "mine", "host", None, "host"]


def test_an_id_set_for_one_request_is_not_the_next_request_s() -> None:
    # As on a worker's executor thread: one context, requests made current in turn.
    def sequence() -> list[str | None]:
        seen = []
        token = current_request.set(Scope(1, {H: "first"}))  # type: ignore[arg-type]
        telemetry.set_correlation_id("set-by-first")
        seen.append(telemetry.get_correlation_id())
        current_request.reset(token)
        seen.append(telemetry.get_correlation_id())
        token = current_request.set(Scope(2, {}))  # type: ignore[arg-type]
        seen.append(telemetry.get_correlation_id())
        current_request.reset(token)
        token = current_request.set(Scope(3, {H: "third"}))  # type: ignore[arg-type]
        seen.append(telemetry.get_correlation_id())
        current_request.reset(token)
        return seen

    assert contextvars.copy_context().run(sequence) == ["set-by-first", None, None, "third"]


def test_outgoing_metadata() -> None:
    assert telemetry.outgoing_metadata() == {}
    assert telemetry.outgoing_metadata({"a": 1, "b": "x"}) == {"a": "1", "b": "x"}
    telemetry.set_correlation_id("cid-1")
    assert telemetry.outgoing_metadata({"a": "1"}) == {"a": "1", H: "cid-1"}
    assert telemetry.outgoing_metadata({H: "caller's"}) == {H: "caller's"}

    def inside() -> tuple[dict[str, str], dict[str, str]]:
        plain = telemetry.outgoing_metadata()
        with telemetry.span("op") as s:
            nested = telemetry.outgoing_metadata({"x": "y"})
        assert nested["traceparent"] == f"00-0af7651916cd43dd8448eb211c80319c-{s.span_id}-01"
        return plain, nested

    plain, nested = in_scope(Scope(5, {H: "req", "traceparent": TRACEPARENT, "tracestate": "k=v"}), inside)
    assert plain == {H: "req", "traceparent": TRACEPARENT, "tracestate": "k=v"}
    assert nested["x"] == "y" and nested[H] == "req" and nested["tracestate"] == "k=v"


# ------------------------------------------------------------------ backends


def test_backend_selection_and_is_enabled(rec: Recorder) -> None:
    assert telemetry.get_backend() is rec
    assert telemetry.is_enabled()
    telemetry.set_backend(None)
    assert isinstance(telemetry.get_backend(), telemetry.LogBackend)
    assert not telemetry.is_enabled()
    telemetry.emit("dropped", {"n": 1})  # the log backend: nothing to see, nothing raised
    telemetry.set_backend(telemetry.LogBackend())
    assert not telemetry.is_enabled()
    telemetry.set_backend(rec)
    telemetry.emit("kept", {"n": 1})
    assert [e[0] for e in rec.events] == ["kept"]


def test_emit_positional_and_keyword(rec: Recorder) -> None:
    telemetry.emit("tool.execution.stop", {"duration": 1234, "bytes": 5000}, {"tool": "predict"}, "abc-123")
    telemetry.emit(
        event="kw", measurements={"flag": True}, metadata={"tool": "t"}, correlation_id="kw-id"
    )
    telemetry.emit("bare", {"n": 2})
    ev = rec.by_name()
    assert ev["tool.execution.stop"] == (
        "tool.execution.stop",
        {"duration": 1234.0, "bytes": 5000.0},
        {"tool": "predict", "correlation_id": "abc-123"},
        "abc-123",
        0,
    )
    assert ev["kw"] == ("kw", {"flag": 1.0}, {"tool": "t", "correlation_id": "kw-id"}, "kw-id", 0)
    assert ev["bare"] == ("bare", {"n": 2.0}, {}, None, 0)
    with pytest.raises(TypeError, match="must be a number"):
        telemetry.emit("bad", {"n": "one"}, None, "x")


def test_emit_carries_the_current_id_unless_given_one(rec: Recorder) -> None:
    telemetry.set_correlation_id("current")
    telemetry.emit("a", {})
    telemetry.emit("b", {}, None, "explicit")
    telemetry.emit("c", {}, {"correlation_id": "in-metadata"})
    ev = rec.by_name()
    assert ev["a"][2] == {"correlation_id": "current"} and ev["a"][3] == "current"
    assert ev["b"][2] == {"correlation_id": "explicit"} and ev["b"][3] == "explicit"
    assert ev["c"][2] == {"correlation_id": "current"}


def test_span_positional_and_keyword(rec: Recorder) -> None:
    with telemetry.span("inference", {"model": "m"}, "span-cid") as s:
        assert telemetry.get_correlation_id() == "span-cid"
        assert s.correlation_id == "span-cid"
        telemetry.emit("inside", {"n": 1})
    assert telemetry.get_correlation_id() is None
    with telemetry.span(operation="kw", metadata={"a": 1}, correlation_id="kw-cid"):
        pass
    telemetry.set_correlation_id("ambient")
    with telemetry.span("ambient-span") as s2:
        with telemetry.span("nested") as inner:
            assert inner.parent_span_id == s2.span_id
    with pytest.raises(KeyError):
        with telemetry.span("failing", None, "err-cid"):
            raise KeyError("propagates")
    assert telemetry.get_correlation_id() == "ambient"
    ev = rec.by_name()
    name, measurements, md, cid, duration = ev["inference"]
    assert cid == "span-cid" and duration >= 1 and measurements == {}
    assert md["model"] == "m" and md["correlation_id"] == "span-cid" and md["status"] == "ok"
    assert md["span_id"] == s.span_id
    assert ev["inside"][3] == "span-cid"
    assert ev["kw"][3] == "kw-cid" and ev["kw"][2]["a"] == 1
    assert ev["ambient-span"][3] == "ambient" and ev["nested"][2]["parent_span_id"] == s2.span_id
    assert ev["failing"][3] == "err-cid" and ev["failing"][2]["error_type"] == "KeyError"


def test_backend_gets_the_request_s_trace_context_and_id(rec: Recorder) -> None:
    def inside() -> None:
        telemetry.emit("evt", {"n": 1}, {"tracestate": "mine"})

    in_scope(Scope(7, {H: "req-7", "traceparent": TRACEPARENT, "tracestate": "k=v"}), inside)
    (ev,) = rec.events
    assert ev[2] == {"tracestate": "mine", "correlation_id": "req-7", "traceparent": TRACEPARENT}
    assert ev[3] == "req-7"


def test_a_failing_backend_does_not_fail_the_span_block() -> None:
    class Broken:
        def emit(self, *args: Any) -> None:
            raise RuntimeError("backend down")

    telemetry.set_backend(Broken())
    try:
        with telemetry.span("s"):
            value = 42
        assert value == 42
        with pytest.raises(RuntimeError, match="backend down"):
            telemetry.emit("e", {})
    finally:
        telemetry.set_backend(None)


# -------------------------------------------------------- through a worker


def until_final(c: WorkerClient, fid: int) -> tuple[list[pb.Frame], pb.Frame]:
    events: list[pb.Frame] = []
    while True:
        f = c.recv()
        if f.WhichOneof("kind") == "telemetry":
            events.append(f)
            continue
        assert f.id == fid, f
        return events, f


def result(f: pb.Frame) -> Any:
    assert f.WhichOneof("kind") == "result", f
    return decode(f.result.value)


def md_of(f: pb.Frame) -> dict[str, Any]:
    return {k: decode(v) for k, v in f.telemetry.metadata.items()}


@pytest.fixture(scope="module")
def shared_obs() -> Iterator[Shared[WorkerClient]]:
    s = Shared(lambda: start_worker("obs_adapter.ObsAdapter"))
    yield s
    s.close()


@pytest.fixture
def obs(shared_obs: Shared[WorkerClient]) -> WorkerClient:
    return shared_obs.live()


def test_the_host_s_id_is_the_tool_s(obs: WorkerClient) -> None:
    assert obs.call("whoami", metadata={H: "req-a"}) == "req-a"
    assert obs.call("whoami") == ""
    assert obs.call("async_ids", metadata={H: "req-b"}) == ["req-b", "req-b"]
    assert obs.call("thread_ids", metadata={H: "req-c"}) == ["req-c", ""]


def test_an_id_a_tool_sets_stays_with_its_request(obs: WorkerClient) -> None:
    assert obs.call("set_own", cid="own", metadata={H: "req-d"}) == "own"
    assert obs.call("whoami") == ""
    assert obs.call("set_own", cid="own2") == "own2"
    assert obs.call("whoami", metadata={H: "req-e"}) == "req-e"


def test_events_carry_the_request_s_id(obs: WorkerClient) -> None:
    fid = obs.execute("traced", metadata={H: "req-f", "traceparent": TRACEPARENT})
    events, final = until_final(obs, fid)
    assert result(final) == "req-f"
    assert [(f.id, f.telemetry.name) for f in events] == [(fid, "obs.evt"), (fid, "obs.op")]
    for f in events:
        md = md_of(f)
        assert md["correlation_id"] == "req-f" and md["traceparent"] == TRACEPARENT
    fid = obs.execute("traced")
    events, final = until_final(obs, fid)
    assert result(final) == "" and len(events) == 2
    assert all("correlation_id" not in md_of(f) for f in events)


def test_explicit_ids_win_over_the_request_s(obs: WorkerClient) -> None:
    fid = obs.execute("explicit", metadata={H: "req-g"})
    events, final = until_final(obs, fid)
    assert result(final) == ["span-cid", "req-g"]
    assert {f.telemetry.name: md_of(f)["correlation_id"] for f in events} == {
        "obs.inner": "span-cid",
        "obs.given": "span-cid",
        "obs.kw": "kw-cid",
        "obs.kwspan": "kwspan-cid",
    }


def test_outgoing_metadata_in_a_tool(obs: WorkerClient) -> None:
    assert obs.call("headers", metadata={H: "req-h", "traceparent": TRACEPARENT, "tracestate": "a=b"}) == {
        "accept": "json",
        H: "req-h",
        "traceparent": TRACEPARENT,
        "tracestate": "a=b",
    }


def test_stream_steps_see_the_request_s_id(obs: WorkerClient) -> None:
    fid = obs.execute("stream_ids", n=3, stream=True, window=8, metadata={H: "req-i"})
    items = []
    while True:
        f = obs.recv()
        assert f.id == fid and f.WhichOneof("kind") == "chunk", f
        if f.chunk.HasField("value"):
            items.append(decode(f.chunk.value))
        if f.chunk.is_final:
            break
    assert items == ["req-i"] * 3


def test_concurrent_requests_on_a_shared_instance_keep_their_ids(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn("obs_adapter.SharedObsAdapter", extra_args=["--profile", "thread", "--threads", "4"])
    a = c.execute("paired", metadata={H: "left"})
    b = c.execute("paired", metadata={H: "right"})
    replies = {f.id: result(f) for f in (c.recv(), c.recv())}
    assert replies == {a: "left", b: "right"}
