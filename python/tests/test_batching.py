"""Batched tools (``@tool(batch=Batch(...))``, ``Execute.batch``, ``Result.items``)
and the adapter's ``warmup()`` hook, against real workers in both profiles.

The adapters are in batch_adapter.py; shared memory with batches is tested in
test_shm.py, a stacked tool without numpy in test_without_numpy.py."""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from wire_client import Shared, WorkerClient, start_worker

from snakepit_bridge import BaseAdapter, Batch, BatchItemError, tool
from snakepit_bridge._codec import decode, encode
from snakepit_bridge._proto import snakepit_pb2 as pb
from snakepit_bridge.base_adapter import TOOL_ATTR, ToolMetadata
from snakepit_bridge.base_adapter_threaded import thread_safe_method

ADAPTER = "batch_adapter.BatchAdapter"
PROFILES = {"process": [], "thread": ["--profile", "thread", "--threads", "4"]}


@pytest.fixture(scope="module", params=sorted(PROFILES))
def shared_worker(request: pytest.FixtureRequest) -> Iterator[Shared[WorkerClient]]:
    s = Shared(lambda: start_worker(ADAPTER, extra_args=PROFILES[request.param]))
    yield s
    s.close()


@pytest.fixture
def worker(shared_worker: Shared[WorkerClient]) -> WorkerClient:
    """A BatchAdapter worker of each profile, shared by the module's tests."""
    return shared_worker.live()


def run_batch(c: WorkerClient, tool_name: str, calls: list[Any], **kwargs: Any) -> pb.Frame:
    return c.reply(c.execute_batch(tool_name, calls, **kwargs))


def items_of(f: pb.Frame) -> list[Any]:
    """Each item of a batch's Result: its decoded value, or its Error."""
    assert f.WhichOneof("kind") == "result", f
    assert not f.result.HasField("value")
    return [decode(i.value) if i.WhichOneof("outcome") == "value" else i.error for i in f.result.items]


def bad_ndarray() -> pb.Value:
    """A value that fails to decode: 3 bytes of data for two float64s."""
    v = pb.Value()
    v.ndarray.dtype = "float64"
    v.ndarray.shape.extend([2])
    v.ndarray.data = b"\0\0\0"
    return v


# ----------------------------------------------------------------- the Hello


def test_hello_carries_the_batch_spec_of_each_batched_tool(worker: WorkerClient) -> None:
    assert worker.hello is not None
    tools = {t.name: t for t in worker.hello.hello.tools}
    square = tools["square"]
    assert square.HasField("batch")
    # 2.5 ms is rounded up to whole milliseconds.
    assert (square.batch.max_size, square.batch.max_wait_ms, square.batch.stack) == (8, 3, False)
    assert (tools["seen"].batch.max_size, tools["seen"].batch.max_wait_ms) == (32, 5)
    assert tools["slow_double"].HasField("batch") and tools["slow_double"].batch.max_wait_ms == 0
    assert tools["slow_double"].is_async and not tools["slow_double"].supports_streaming
    assert tools["stacked"].batch.stack
    # The one parameter of a batched tool is the list of calls: none is described.
    assert not square.parameters
    assert not tools["plain"].HasField("batch") and [p.name for p in tools["plain"].parameters] == ["x"]


# ------------------------------------------------------------------ batches


def test_a_batch_gets_one_result_per_call_in_order(worker: WorkerClient) -> None:
    f = run_batch(worker, "square", [{"x": i} for i in range(5)])
    assert items_of(f) == [{"x": i * i} for i in range(5)]


def test_the_tool_is_called_once_with_every_call_and_the_request_s_session(worker: WorkerClient) -> None:
    f = run_batch(worker, "seen", [{"a": 1}, {"b": [2, 3]}, {}], session_id="s-batch")
    assert items_of(f) == [
        {"items": 3, "item": {"a": 1}, "session_id": "s-batch"},
        {"items": 3, "item": {"b": [2, 3]}, "session_id": "s-batch"},
        {"items": 3, "item": {}, "session_id": "s-batch"},
    ]


def test_an_exception_among_the_results_fails_its_call_alone(worker: WorkerClient) -> None:
    got = items_of(run_batch(worker, "square", [{"x": 2}, {"x": -3}, {"x": 13}, {"x": 4}]))
    assert got[0] == {"x": 4} and got[3] == {"x": 16}
    item_error, value_error = got[1], got[2]
    assert item_error.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and item_error.python_type == "BatchItemError"
    assert item_error.message == "negative: -3"
    assert dict(item_error.details) == {"module": "snakepit_bridge.batching", "x": "-3"}
    assert value_error.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and value_error.python_type == "ValueError"
    assert value_error.message == "unlucky" and value_error.details["module"] == "builtins"
    # Returned, never raised: no traceback.
    assert not value_error.traceback


def test_a_result_that_cannot_be_encoded_fails_its_call_alone(worker: WorkerClient) -> None:
    got = items_of(run_batch(worker, "square", [{"x": 1}, {"x": "text"}, {"x": 3}]))
    assert got[0] == {"x": 1} and got[2] == {"x": 9}
    assert got[1].kind == pb.ERROR_KIND_ENCODING and got[1].details["path"] == "result[1]"


def test_an_object_without_a_wire_form_is_a_marker_by_default(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn(ADAPTER)
    fid = c.execute_batch("square", [{"x": "object"}, {"x": 2}])
    # The first marker of a type in the process is announced (before the reply).
    telemetry = c.recv()
    assert telemetry.telemetry.name == "snakepit.serialization.unserializable_marker"
    got = items_of(c.reply(fid))
    assert got == [{"__ffi_unserializable__": True, "__type__": "builtins.object"}, {"x": 4}]


def test_in_the_error_mode_it_fails_its_call_alone(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn(ADAPTER, extra_args=["--unserializable", "error"])
    got = items_of(run_batch(c, "square", [{"x": "object"}, {"x": 2}]))
    assert got[0].kind == pb.ERROR_KIND_ENCODING and "builtins.object" in got[0].message
    assert got[1] == {"x": 4}


def test_calls_whose_arguments_are_bad_fail_alone_and_the_others_run(worker: WorkerClient) -> None:
    positional = pb.BatchCall(args=[encode(1)])
    undecodable = pb.BatchCall(kwargs={"a": bad_ndarray()})
    unknown_ref = pb.BatchCall(kwargs={"a": pb.Value(ref=pb.ObjectRef(id="w/404", session_id=""))})
    f = run_batch(worker, "seen", [{"a": 1}, positional, undecodable, unknown_ref, {"a": 5}])
    got = items_of(f)
    # The tool got the two good calls only.
    assert got[0] == {"items": 2, "item": {"a": 1}, "session_id": ""}
    assert got[4] == {"items": 2, "item": {"a": 5}, "session_id": ""}
    assert got[1].kind == pb.ERROR_KIND_BAD_ARGUMENTS and "keyword arguments only" in got[1].message
    assert got[2].kind == pb.ERROR_KIND_ENCODING and "could not decode arguments" in got[2].message
    assert got[3].kind == pb.ERROR_KIND_NOT_FOUND and got[3].python_type == "RefNotFoundError"


def test_when_every_call_is_bad_the_tool_is_not_called(worker: WorkerClient) -> None:
    got = items_of(run_batch(worker, "explode", [pb.BatchCall(args=[encode(1)]), pb.BatchCall(args=[encode(2)])]))
    assert [e.kind for e in got] == [pb.ERROR_KIND_BAD_ARGUMENTS] * 2


def test_a_tool_that_raises_fails_the_whole_batch(worker: WorkerClient) -> None:
    f = run_batch(worker, "explode", [{}, {}, {}])
    assert f.WhichOneof("kind") == "error", f
    assert f.error.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and f.error.python_type == "RuntimeError"
    assert f.error.message == "exploded with 3 calls" and "explode" in f.error.traceback


def test_results_that_do_not_answer_the_calls_one_for_one_fail_the_whole_batch(worker: WorkerClient) -> None:
    f = run_batch(worker, "short", [{}, {}, {}])
    assert f.WhichOneof("kind") == "error", f
    assert f.error.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and f.error.python_type == "BatchResultMismatch"
    assert f.error.message == "batched tool 'short' returned 2 results for 3 calls"
    # Counted against the calls the tool was given.
    f = run_batch(worker, "short", [{}, pb.BatchCall(args=[encode(1)]), {}, {}])
    assert f.error.message == "batched tool 'short' returned 2 results for 3 calls"
    f = run_batch(worker, "short", [{"kind": "int"}])
    assert f.error.message == "batched tool 'short' returned int, not a list of 1 results (one per call)"


def test_an_async_batched_tool(worker: WorkerClient) -> None:
    assert items_of(run_batch(worker, "slow_double", [{"n": n} for n in range(6)])) == [0, 2, 4, 6, 8, 10]


def test_a_batch_carries_worker_timing_when_traced(worker: WorkerClient) -> None:
    traced = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    f = run_batch(worker, "slow_double", [{"n": 1}, {"n": 2}], metadata=traced)
    assert items_of(f) == [2, 4]
    assert f.result.HasField("timing") and f.result.timing.run_nanos >= 10_000_000


def test_a_batch_past_max_frame_bytes_is_payload_too_large(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn(ADAPTER, extra_args=["--max-frame-bytes", "4096"])
    f = run_batch(c, "big", [{"n": 1500}, {"n": 1500}, {"n": 1500}])
    assert f.WhichOneof("kind") == "error" and f.error.kind == pb.ERROR_KIND_PAYLOAD_TOO_LARGE, f
    assert items_of(run_batch(c, "big", [{"n": 1000}, {"n": 1000}])) == ["y" * 1000] * 2


def test_a_cancelled_batch_is_answered_once_and_stops(worker: WorkerClient) -> None:
    fid = worker.execute_batch("nap", [{"s": 30}, {"s": 0}])
    time.sleep(0.05)
    worker.cancel(fid)
    f = worker.reply(fid)
    assert f.WhichOneof("kind") == "error" and f.error.kind == pb.ERROR_KIND_CANCELLED, f
    worker.recv_nothing(0.1)
    # The tool's task was cancelled: the worker (one slot in the process profile) serves on at once.
    assert items_of(run_batch(worker, "nap", [{"s": 0}])) == [None]


# ------------------------------------------------------ what is not a batch


def test_a_tool_that_is_not_batched_refuses_a_batch(worker: WorkerClient) -> None:
    f = run_batch(worker, "plain", [{"x": 1}])
    assert f.WhichOneof("kind") == "error" and f.error.kind == pb.ERROR_KIND_BAD_ARGUMENTS, f
    assert f.error.message == "tool 'plain' is not batched"
    f = run_batch(worker, "snakepit.ffi.len", [{"obj": [1]}])
    assert f.error.kind == pb.ERROR_KIND_BAD_ARGUMENTS and f.error.message == "tool 'snakepit.ffi.len' is not batched"
    f = run_batch(worker, "no_such_tool", [{}])
    assert f.error.kind == pb.ERROR_KIND_UNKNOWN_TOOL
    assert worker.call("plain", x=1) == 2


def test_an_adapter_serving_tools_by_name_refuses_a_batch(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn("batch_adapter.DynamicAdapter")
    f = run_batch(c, "anything", [{"x": 1}])
    assert f.error.kind == pb.ERROR_KIND_BAD_ARGUMENTS and f.error.message == "tool 'anything' is not batched"
    assert c.call("anything", x=1) == {"tool": "anything", "arguments": {"x": 1}}


def test_a_batch_is_never_streamed_nor_carries_arguments_of_its_own(worker: WorkerClient) -> None:
    f = run_batch(worker, "square", [{"x": 1}], stream=True)
    assert f.error.kind == pb.ERROR_KIND_BAD_ARGUMENTS and "cannot stream" in f.error.message
    fid = worker.new_id()
    worker.pending.add(fid)
    frame = pb.Frame(id=fid, execute=pb.Execute(tool="square", args=[encode(1)], batch=[pb.BatchCall()]))
    worker.send(frame)
    f = worker.reply(fid)
    assert f.error.kind == pb.ERROR_KIND_BAD_ARGUMENTS and "carries its arguments in its calls" in f.error.message


def test_a_lone_call_of_a_batched_tool_runs_as_a_batch_of_one(worker: WorkerClient) -> None:
    assert worker.call("square", x=7) == {"x": 49}
    f = worker.call_frame("square", x=-1)
    assert f.error.python_type == "BatchItemError" and f.error.message == "negative: -1"
    f = worker.call_frame("square", 7)
    assert f.error.kind == pb.ERROR_KIND_BAD_ARGUMENTS
    f = worker.call_frame("square", x=1, stream=True)
    assert f.error.kind == pb.ERROR_KIND_BAD_ARGUMENTS and "cannot stream" in f.error.message


# ------------------------------------------------------------ stack=True


def test_stacked_arguments_and_results_split_by_rows(worker: WorkerClient) -> None:
    np = pytest.importorskip("numpy")
    calls = [{"a": np.full((2, 3), i, dtype=np.float32)} for i in range(4)]
    got = items_of(run_batch(worker, "stacked", calls))
    assert len(got) == 4
    for i, row in enumerate(got):
        assert isinstance(row, np.ndarray) and row.dtype == np.float32 and row.shape == (2, 3)
        assert (row == 10 * i).all()
    # What the tool got: one array, the calls along a new leading axis.
    calls = [{"a": np.arange(3) + i, "mode": "list"} for i in range(2)]
    assert items_of(run_batch(worker, "stacked", calls)) == [{"type": "ndarray", "shape": [2, 3], "dtype": "int64"}] * 2
    # Values that are not arrays are stacked with np.asarray.
    calls = [{"a": [i, i + 1], "mode": "list"} for i in range(3)]
    assert items_of(run_batch(worker, "stacked", calls))[0]["shape"] == [3, 2]


def test_a_stacked_tool_may_return_a_dict_of_columns(worker: WorkerClient) -> None:
    np = pytest.importorskip("numpy")
    calls = [{"a": np.full(4, i), "mode": "dict"} for i in range(3)]
    got = items_of(run_batch(worker, "stacked", calls))
    assert [(int(g["sum"]), g["index"], g["shape"]) for g in got] == [(4 * i, i, [3, 4]) for i in range(3)]


def test_stacked_calls_with_other_keywords_fail_alone(worker: WorkerClient) -> None:
    np = pytest.importorskip("numpy")
    calls = [{"a": np.ones(2)}, {"b": np.ones(2)}, {"a": np.ones(2), "c": 1}, {"a": np.zeros(2)}]
    got = items_of(run_batch(worker, "stacked", calls))
    assert (got[0] == 10).all() and (got[3] == 0).all()
    for e in (got[1], got[2]):
        assert e.kind == pb.ERROR_KIND_BAD_ARGUMENTS and "same keywords" in e.message and e.details["expected"] == "a"


def test_values_that_do_not_stack_and_results_of_the_wrong_length_fail_the_batch(worker: WorkerClient) -> None:
    np = pytest.importorskip("numpy")
    f = run_batch(worker, "stacked", [{"a": np.ones(2)}, {"a": np.ones(3)}])
    assert f.error.kind == pb.ERROR_KIND_BAD_ARGUMENTS and "the values of 'a' do not stack" in f.error.message
    f = run_batch(worker, "stacked", [{"a": np.ones(2), "mode": "wrong"}, {"a": np.ones(2), "mode": "wrong"}])
    assert f.error.python_type == "BatchResultMismatch"
    assert f.error.message == "batched tool 'stacked' returned 3 results for 2 calls"


# --------------------------------------------------------------- decorator


def test_batch_checks_its_settings() -> None:
    assert Batch() == Batch(32, 5, False)
    assert Batch(max_size=1, max_wait_ms=0.5, stack=True).max_wait_ms == 0.5
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"max_size": 0}, ValueError, "max_size"),
        ({"max_size": 2**32}, ValueError, "max_size"),
        ({"max_size": 1.5}, TypeError, "max_size=...) must be an int, got float"),
        ({"max_size": True}, TypeError, "got bool"),
        ({"max_wait_ms": -1}, ValueError, "max_wait_ms"),
        ({"max_wait_ms": float("nan")}, ValueError, "max_wait_ms"),
        ({"max_wait_ms": float("inf")}, ValueError, "max_wait_ms"),
        ({"max_wait_ms": 10**400}, ValueError, "max_wait_ms"),
        ({"max_wait_ms": "5"}, TypeError, "got str"),
        ({"stack": 1}, TypeError, "stack=...) must be a bool"),
    ]
    for kwargs, error, text in cases:
        with pytest.raises(error, match=re.escape(text)):
            Batch(**kwargs)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Batch().max_size = 2  # type: ignore[misc]


def test_tool_batch_records_the_batch_in_the_metadata() -> None:
    class A(BaseAdapter):
        @tool(batch=Batch(max_size=4))
        def double(self, items: list[dict[str, Any]]) -> list[int]:
            """Double."""
            return [2 * it["n"] for it in items]

        @tool("Async", batch=Batch())
        async def later(self, items: list[Any]) -> list[Any]:
            return items

        @thread_safe_method
        @tool(batch=Batch(stack=True))
        def wrapped(self, args: dict[str, Any]) -> Any:
            return args

        @tool
        def plain(self) -> None:
            pass

    metas = {m.name: m for m in A.get_tools()}
    assert metas["double"].batch == Batch(max_size=4) and metas["double"].description == "Double."
    assert metas["later"].batch == Batch() and metas["later"].is_async
    assert metas["wrapped"].batch == Batch(stack=True)
    assert metas["plain"].batch is None
    meta = getattr(A.double, TOOL_ATTR)
    assert isinstance(meta, ToolMetadata) and not meta.supports_streaming


def test_tool_batch_refuses_what_cannot_be_batched() -> None:
    def methods() -> Iterator[Callable[..., Any]]:
        def no_list(self: Any) -> list[Any]:
            return []

        def two(self: Any, items: list[Any], extra: int) -> list[Any]:
            return []

        def keyword_only(self: Any, *, items: list[Any]) -> list[Any]:
            return []

        def star(self: Any, *items: Any) -> list[Any]:
            return []

        yield from (no_list, two, keyword_only, star)

    for f in methods():
        with pytest.raises(TypeError, match="exactly one parameter besides self"):
            tool(batch=Batch())(f)

    def gen(self: Any, items: list[Any]) -> Iterator[Any]:
        yield from items

    async def agen(self: Any, items: list[Any]) -> Any:
        yield items

    for f in (gen, agen):
        with pytest.raises(TypeError, match="cannot stream"):
            tool(batch=Batch())(f)
    with pytest.raises(TypeError, match="cannot stream"):
        tool(batch=Batch(), supports_streaming=True)(lambda self, items: items)
    with pytest.raises(TypeError, match="takes a snakepit_bridge.Batch, got dict"):
        tool(batch={"max_size": 2})  # type: ignore[call-overload]

    # A decorator that keeps the signature (functools.wraps) is fine.
    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return f(*args, **kwargs)

        return wrapper

    @tool(batch=Batch())
    @deco
    def ok(self: Any, items: list[Any]) -> list[Any]:
        return items

    assert getattr(ok, TOOL_ATTR).batch == Batch()


def test_the_package_exports_batch_and_batch_item_error() -> None:
    import snakepit_bridge
    from snakepit_bridge import batching

    for name in ("Batch", "BatchItemError"):
        assert name in snakepit_bridge.__all__ and getattr(snakepit_bridge, name) is getattr(batching, name)
    assert batching.__all__ == ["Batch", "BatchItemError"]


def test_batch_item_error_keeps_its_details_as_text() -> None:
    e = BatchItemError("bad row", details={"row": 3, "why": None})
    assert str(e) == "bad row" and e.details == {"row": "3", "why": "None"}
    assert BatchItemError().details == {} and isinstance(e, Exception)


# ----------------------------------------------------------------- warmup()


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_warmup_runs_once_before_the_hello(spawn: Callable[..., WorkerClient], profile: str) -> None:
    c = spawn(ADAPTER, extra_args=PROFILES[profile])
    (warmed,) = items_of(run_batch(c, "warmed_state", [{}]))
    assert warmed["pid"] == c.proc.pid and warmed["session_id"] == ""
    # Process profile: a new instance, initialized first (and cleaned up after);
    # thread profile: the shared instance, initialized once at start-up.
    assert warmed["lifecycle"] == ["initialize"]
    assert warmed["this_instance"] is (profile == "thread")


def test_the_process_profile_cleans_up_the_instance_it_warmed(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn(ADAPTER)
    (seen,) = items_of(run_batch(c, "lifecycle_seen", [{}]))
    assert seen == ["initialize", "cleanup", "initialize"]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_a_slow_warmup_delays_the_hello(spawn: Callable[..., WorkerClient], profile: str) -> None:
    started = time.time()
    c = spawn("batch_adapter.SlowWarmup", extra_args=PROFILES[profile])
    ready = time.time()
    done_at = c.call("warmed_at")
    assert started < done_at <= ready and ready - started >= 0.3


def test_a_static_warmup_runs_once(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn("batch_adapter.StaticWarmup")
    assert c.call("warmup_calls") == 1


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_a_failing_warmup_fails_the_start(spawn: Callable[..., WorkerClient], profile: str) -> None:
    c = spawn("batch_adapter.FailingWarmup", extra_args=PROFILES[profile], read_hello=False)
    f = c.recv(timeout=20)
    assert f.id == 0 and f.WhichOneof("kind") == "error", f
    e = f.error
    assert e.kind == pb.ERROR_KIND_STARTUP_FAILED and e.python_type == "RuntimeError"
    assert e.message == "warmup() failed for adapter 'batch_adapter.FailingWarmup': the model did not load"
    assert "warmup" in e.traceback and e.details["adapter"] == "batch_adapter.FailingWarmup"
    assert c.wait_exit() == 3
    assert "the model did not load" in c.stderr_text()
