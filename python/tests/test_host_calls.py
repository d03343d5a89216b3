"""Python calling the host: HostCall frames, nested calls back into the worker,
host errors, timeouts, cancellation, session variables and their watches.

Each test drives a real worker over a socketpair and plays the host itself,
answering the worker's HostCall frames.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from snakepit_bridge import HostToolError, SessionContext
from snakepit_bridge._codec import decode, encode
from snakepit_bridge import _frames
from snakepit_bridge._proto import snakepit_pb2 as pb
from wire_client import WorkerClient

ADAPTER = "host_call_adapter.HostCallAdapter"


# ------------------------------------------------------------------ helpers


def ok(value: Any) -> pb.HostCallResult:
    return pb.HostCallResult(value=encode(value))


def err(kind: int, message: str, *, parameter: str = "", details: dict[str, str] | None = None) -> pb.HostCallResult:
    return pb.HostCallResult(error=pb.Error(kind=kind, message=message, parameter=parameter, details=details or {}))


def kwargs_of(f: pb.Frame) -> dict[str, Any]:
    return {k: decode(v) for k, v in f.host_call.kwargs.items()}


def answer(c: WorkerClient, call: pb.Frame, result: pb.HostCallResult) -> None:
    c.send(pb.Frame(id=call.id, host_call_result=result))


def next_host_call(c: WorkerClient, timeout: float = 5.0) -> pb.Frame:
    f = c.recv(timeout)
    assert f.WhichOneof("kind") == "host_call", f"expected a host call, got {f}"
    return f


def serve(
    c: WorkerClient,
    ids: set[int],
    on_call: Callable[[pb.Frame], pb.HostCallResult | None],
    *,
    on_reply: Callable[[pb.Frame], None] | None = None,
    timeout: float = 8.0,
) -> dict[int, pb.Frame]:
    """Play the host until every request in `ids` has its final reply.

    `on_call` answers a HostCall (or returns None to answer later); `on_reply`
    sees every other frame first."""
    replies: dict[int, pb.Frame] = {}
    deadline = time.monotonic() + timeout
    while not ids <= replies.keys():
        f = c.recv(max(0.01, deadline - time.monotonic()))
        if f.WhichOneof("kind") == "host_call":
            r = on_call(f)
            if r is not None:
                answer(c, f, r)
            continue
        if on_reply is not None:
            on_reply(f)
        replies[f.id] = f
    return replies


def result_of(f: pb.Frame) -> Any:
    assert f.WhichOneof("kind") == "result", f"expected a result, got {f}"
    return decode(f.result.value)


# -------------------------------------------------------------------- calls


def test_host_call_frame_and_result(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    fid = c.execute("call_host", name="greet", args=[1, "two"], kwargs={"name": "py"}, session_id="s-1")
    call = next_host_call(c)
    hc = call.host_call
    assert call.id >= 1
    assert hc.tool == "greet" and hc.session_id == "s-1" and hc.parent_request_id == fid
    assert [decode(a) for a in hc.args] == [1, "two"] and kwargs_of(call) == {"name": "py"}
    assert hc.timeout_ms == 30_000  # no deadline on the request: 30 s
    answer(c, call, ok({"hello": "py"}))
    assert result_of(c.reply(fid)) == {"hello": "py"}
    # A second call gets a new id; ids are the worker's own space.
    fid = c.execute("call_host", name="greet")
    second = next_host_call(c)
    assert second.id > call.id and second.host_call.session_id == ""
    answer(c, second, pb.HostCallResult())  # no outcome: None
    assert result_of(c.reply(fid)) is None


def test_a_host_call_carries_the_requests_correlation_id(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    fid = c.execute("call_host", name="greet", metadata={"x-snakepit-correlation-id": "cid-9"})
    call = next_host_call(c)
    assert call.host_call.correlation_id == "cid-9"
    answer(c, call, ok(1))
    assert result_of(c.reply(fid)) == 1
    # None on the request: none on the call.
    fid = c.execute("call_host", name="greet")
    call = next_host_call(c)
    assert call.host_call.correlation_id == ""
    answer(c, call, ok(2))
    assert result_of(c.reply(fid)) == 2


def test_values_of_every_kind_round_trip_through_a_host_call(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    values = [
        None,
        True,
        -7,
        10**30,
        -(10**40),
        2.5,
        "text ü",
        b"\x00\xffbytes",
        [1, [2, [3, {"deep": b"x"}]]],
        (1, "t"),
        {1, 2},
        frozenset({"f"}),
        {"nested": {"map": {"with": [1, 2.0, None]}}, 7: "int key", (1, 2): "tuple key"},
        dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC),
        dt.timedelta(seconds=3, microseconds=5),
        complex(1, -2),
    ]
    for v in values:
        fid = c.execute("roundtrip", value=v)
        call = next_host_call(c)
        assert call.host_call.tool == "echo"
        assert decode(call.host_call.args[0]) == v
        answer(c, call, pb.HostCallResult(value=call.host_call.args[0]))
        back = result_of(c.reply(fid))
        assert back == v and type(back) is type(v)
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    fid = c.execute("roundtrip", value=arr)
    call = next_host_call(c)
    answer(c, call, pb.HostCallResult(value=call.host_call.args[0]))
    back = result_of(c.reply(fid))
    assert back.dtype == np.float32 and back.shape == (3, 4) and (back == arr).all()


def test_host_tools_listed_once_per_request(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    spec = {
        "validate": {
            "name": "validate",
            "description": "Validate data",
            "parameters": [{"name": "data", "type": "map", "required": True, "description": "what to check"}],
        }
    }
    listings = []

    def on_call(f: pb.Frame) -> pb.HostCallResult:
        assert f.host_call.tool == "snakepit.host_tools.list" and f.host_call.session_id == "s"
        listings.append(f.id)
        return ok(spec)

    fid = c.execute("list_tools", session_id="s")
    out = result_of(serve(c, {fid}, on_call)[fid])
    assert out == {"tools": spec, "cached": True}
    assert len(listings) == 1


def test_reference_style_call_elixir_tool(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    stored = []

    def on_call(f: pb.Frame) -> pb.HostCallResult:
        tool, kw = f.host_call.tool, kwargs_of(f)
        if tool == "snakepit.host_tools.list":
            return ok({"validate": {"name": "validate", "description": "", "parameters": []}})
        if tool == "validate":
            assert kw == {"input": {"a": 1}, "options": {"timeout": 5000}} or kw == {"data": {"a": 1}}
            return ok({"valid": True})
        if tool == "store_result":
            stored.append(kw["result"])
            return ok({"id": "r-1"})
        raise AssertionError(f"unexpected host call {tool}")

    fid = c.execute("call_backend_tool", operation="validate", data={"a": 1}, session_id="s")
    assert result_of(serve(c, {fid}, on_call)[fid]) == {"valid": True}
    fid = c.execute("validate_and_process", data={"a": 1}, session_id="s")
    assert result_of(serve(c, {fid}, on_call)[fid]) == {"success": True, "result": {"a": 2}}
    assert stored == [{"a": 2}]
    # An operation the host does not list: the adapter's own ValueError.
    fid = c.execute("call_backend_tool", operation="nope", data={}, session_id="s")
    e = serve(c, {fid}, on_call)[fid].error
    assert e.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and e.python_type == "ValueError"


# ------------------------------------------------------------ re-entrancy


def _nested_round(c: WorkerClient, depth: int) -> None:
    """Tool `nest` calls host tool `reenter`, which (played here) calls `nest`
    on the same worker one level deeper before it answers."""
    top = c.execute("nest", level=1, depth=depth, session_id="s")
    waiting: dict[int, pb.Frame] = {}  # nested Execute id -> the host call it answers
    parents = {top}

    def on_call(f: pb.Frame) -> None:
        hc = f.host_call
        assert hc.tool == "reenter" and hc.session_id == "s"
        assert hc.parent_request_id in parents
        kw = kwargs_of(f)
        nested = c.execute("nest", level=kw["level"], depth=kw["depth"], session_id="s")
        parents.add(nested)
        waiting[nested] = f
        return None

    def on_reply(f: pb.Frame) -> None:
        call = waiting.pop(f.id, None)
        if call is not None:
            assert f.WhichOneof("kind") == "result", f
            answer(c, call, pb.HostCallResult(value=f.result.value))

    replies = serve(c, {top}, on_call, on_reply=on_reply)
    expected: dict[str, Any] = {"level": depth}
    for level in range(depth - 1, 0, -1):
        expected = {"level": level, "inner": expected}
    assert result_of(replies[top]) == expected
    assert not waiting


def test_nested_calls_three_levels_deep_in_the_process_profile(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    assert c.hello is not None and c.hello.hello.capacity == 1
    for _ in range(3):  # again with the threads started the first time, and warm plans
        _nested_round(c, 3)
    c.send(_frames.ping(900))
    assert c.reply(900).pong.in_flight == 0


def test_nested_calls_five_levels_deep_in_the_thread_profile(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER, extra_args=["--profile", "thread", "--threads", "2"])
    _nested_round(c, 5)


def test_waiting_requests_give_their_slot_back(spawn) -> None:
    # Capacity 2, six requests: all six reach their host call before any answer.
    c: WorkerClient = spawn(ADAPTER, extra_args=["--profile", "thread", "--threads", "2"])
    ids = [c.execute("call_host", name="hold", kwargs={"i": i}) for i in range(6)]
    calls = [next_host_call(c) for _ in ids]
    assert sorted(call.host_call.parent_request_id for call in calls) == ids
    for call in reversed(calls):
        answer(c, call, ok(kwargs_of(call)["i"] * 10))
    by_id = {f.id: f for f in (c.recv() for _ in ids)}
    assert {fid: result_of(by_id[fid]) for fid in ids} == {fid: i * 10 for i, fid in enumerate(ids)}
    c.send(_frames.ping(901))
    assert c.reply(901).pong.in_flight == 0


def test_more_waiting_requests_than_extra_threads_still_complete(spawn) -> None:
    # 16 requests give their slot back; the 17th waits holding it, the rest queue.
    c: WorkerClient = spawn(ADAPTER)
    ids = [c.execute("call_host", name="hold", kwargs={"i": i}) for i in range(20)]
    first = [next_host_call(c) for _ in range(17)]
    for call in first:
        answer(c, call, ok(kwargs_of(call)["i"]))
    replies = serve(c, set(ids), lambda f: ok(kwargs_of(f)["i"]))
    assert [result_of(replies[fid]) for fid in ids] == list(range(20))


def test_threads_of_one_request_call_the_host_at_once(spawn) -> None:
    # Process profile: while the tool's threads wait, a nested request runs.
    c: WorkerClient = spawn(ADAPTER)
    fid = c.execute("fan_out", count=4, session_id="s")
    calls = [next_host_call(c) for _ in range(4)]
    assert {call.host_call.parent_request_id for call in calls} == {fid}
    nested = c.execute("call_host", name="inner")
    inner = next_host_call(c)
    assert inner.host_call.parent_request_id == nested
    answer(c, inner, ok("inner done"))
    assert result_of(c.reply(nested)) == "inner done"
    for call in calls:
        answer(c, call, ok(kwargs_of(call)["i"] + 100))
    assert result_of(c.reply(fid)) == [100, 101, 102, 103]


def test_async_tool_calls_the_host_and_is_cancelled(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    fid = c.execute("async_call_host", name="a")
    answer(c, next_host_call(c), ok("from host"))
    assert result_of(c.reply(fid)) == "from host"
    fid = c.execute("async_call_host", name="never")
    next_host_call(c)
    c.cancel(fid)
    assert c.reply(fid).error.kind == pb.ERROR_KIND_CANCELLED
    fid = c.execute("async_call_host", name="b")
    answer(c, next_host_call(c), ok("again"))
    assert result_of(c.reply(fid)) == "again"


def test_quick_tool_on_the_reading_thread_hands_the_socket_over(spawn) -> None:
    # A tool known to be quick runs on the thread that reads the socket; when
    # it then calls the host, that thread must let another one read the answer
    # (here the watch thread, which would do it after a while, is kept out).
    c: WorkerClient = spawn("host_call_no_watch.HostCallAdapter")
    seen_inline = False
    for _ in range(30):
        ids = [c.execute("maybe_host", call=False) for _ in range(10)]
        last = c.execute("maybe_host", call=True)
        replies = serve(c, {*ids, last}, lambda f: ok("pong"))
        out = result_of(replies[last])
        assert out["result"] == "pong"
        if out["inline"]:
            seen_inline = True
            break
    assert seen_inline, "the host-calling run never ran inline"
    c.send(_frames.ping(902))
    assert c.reply(902).WhichOneof("kind") == "pong"


# ---------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("kind", "cls", "kind_name", "value_error", "timeout_error"),
    [
        (pb.ERROR_KIND_UNKNOWN_TOOL, "HostToolNotFound", "unknown_tool", False, False),
        (pb.ERROR_KIND_NOT_FOUND, "HostToolNotFound", "not_found", False, False),
        (pb.ERROR_KIND_CONSTRAINT, "VariableConstraintError", "constraint", True, False),
        (pb.ERROR_KIND_TIMEOUT, "HostCallTimeout", "timeout", False, True),
        (pb.ERROR_KIND_BUSY, "HostCallRejected", "busy", False, False),
        (pb.ERROR_KIND_HOST_TOOL, "HostToolError", "host_tool", False, False),
        (pb.ERROR_KIND_BAD_ARGUMENTS, "HostToolError", "bad_arguments", False, False),
    ],
)
def test_host_errors_become_exceptions(spawn, kind, cls, kind_name, value_error, timeout_error) -> None:
    c: WorkerClient = spawn(ADAPTER)
    failure = err(kind, "it went wrong", parameter="p", details={"what": "thing"})
    # Uncaught: the tool's error names the exception class.
    fid = c.execute("call_host", name="failing")
    answer(c, next_host_call(c), failure)
    e = c.reply(fid).error
    assert e.kind == pb.ERROR_KIND_PYTHON_EXCEPTION
    assert e.python_type == cls and e.message == "it went wrong"
    assert e.details["module"] == "snakepit_bridge.errors"
    # Caught: the exception carries what the host said.
    fid = c.execute("classify", name="failing")
    answer(c, next_host_call(c), failure)
    assert result_of(c.reply(fid)) == {
        "type": cls,
        "kind": kind_name,
        "message": "it went wrong",
        "str": "it went wrong",
        "details": {"what": "thing"},
        "parameter": "p",
        "python_type": "",
        "tool": "failing",
        "runtime_error": True,
        "value_error": value_error,
        "timeout_error": timeout_error,
    }


def test_host_call_timeout(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    fid = c.execute("call_host", name="never", timeout=0.2)
    call = next_host_call(c)
    assert call.host_call.timeout_ms == 200
    e = c.reply(fid, timeout=5).error
    assert e.python_type == "HostCallTimeout" and "200 ms" in e.message
    # A late answer is dropped; the worker carries on.
    answer(c, call, ok("late"))
    fid = c.execute("call_host", name="soon")
    answer(c, next_host_call(c), ok("on time"))
    assert result_of(c.reply(fid)) == "on time"


def test_default_timeout_is_what_is_left_of_the_request_deadline(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    fid = c.execute("call_host", name="never", timeout_ms=400)
    call = next_host_call(c)
    # Plus a grace: the host, whose clock started first, ends the request
    # (Timeout, Cancel) before the worker gives up on its own.
    assert 250 < call.host_call.timeout_ms <= 400 + 250
    e = c.reply(fid, timeout=5).error
    assert e.python_type == "HostCallTimeout"


def test_cancel_while_waiting_on_the_host(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    fid = c.execute("call_host", name="never")
    call = next_host_call(c)
    c.cancel(fid, "caller left")
    e = c.reply(fid).error
    assert e.kind == pb.ERROR_KIND_CANCELLED
    # The cancellation reached the tool as an exception from call_host_tool.
    assert c.call("failures", count=1) == ["_Cancelled"]
    answer(c, call, ok("too late"))
    # The slot came back: the worker still runs requests.
    fid = c.execute("call_host", name="soon")
    answer(c, next_host_call(c), ok(1))
    assert result_of(c.reply(fid)) == 1


def test_a_host_call_carries_the_trace_context_of_the_code_that_made_it(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    fid = c.execute("call_host", name="soon", metadata={"traceparent": tp})
    call = next_host_call(c)
    # No span open in the tool: the request's own span is the parent.
    assert call.host_call.traceparent == tp
    answer(c, call, ok(1))
    assert result_of(c.reply(fid)) == 1
    # Without trace context, none is sent.
    fid = c.execute("call_host", name="soon")
    call = next_host_call(c)
    assert call.host_call.traceparent == ""
    answer(c, call, ok(2))
    assert result_of(c.reply(fid)) == 2


def test_shutdown_while_waiting_on_the_host(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    fid = c.execute("call_host", name="never")
    next_host_call(c)
    c.send(_frames.shutdown(0, grace_ms=100))
    assert c.reply(fid).error.kind == pb.ERROR_KIND_SHUTTING_DOWN
    assert c.wait_exit() == 0


def test_context_outside_a_worker_has_no_host() -> None:
    ctx = SessionContext("s")
    assert ctx.host_tools == {} and ctx.elixir_tools == {}
    with pytest.raises(HostToolError) as info:
        ctx.call_elixir_tool("validate", data={})
    assert info.value.kind == "unavailable" and info.value.tool == "validate"
    with pytest.raises(HostToolError):
        ctx.get_variable("x")
    ctx.elixir_tools = {"fake": {"name": "fake"}}
    assert "fake" in ctx.host_tools


# --------------------------------------------------------------- variables


def _variable(name: str, value: Any, version: int = 1) -> dict[str, Any]:
    return {
        "id": f"var-{name}",
        "name": name,
        "type": "float",
        "value": value,
        "constraints": {"min": 0.0, "max": 2.0},
        "version": version,
        "description": "",
    }


def test_variables_tour(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    store: dict[str, dict[str, Any]] = {}
    seen: list[tuple[str, dict[str, Any]]] = []

    def lookup(identifier: str) -> dict[str, Any] | None:
        return next((v for v in store.values() if identifier in (v["id"], v["name"])), None)

    def on_call(f: pb.Frame) -> pb.HostCallResult:
        tool, kw = f.host_call.tool, kwargs_of(f)
        assert f.host_call.session_id == "vars"
        seen.append((tool, kw))
        if tool == "snakepit.variables.register":
            v = _variable(kw["name"], kw["initial_value"])
            v["constraints"] = kw["constraints"]
            store[v["id"]] = v
            return ok(v)
        if tool in ("snakepit.variables.get", "snakepit.variables.set", "snakepit.variables.delete"):
            v = lookup(kw["identifier"])
            if v is None:
                return err(pb.ERROR_KIND_NOT_FOUND, f"no variable {kw['identifier']!r}", details={"what": "variable"})
            if tool == "snakepit.variables.set":
                v["value"] = kw["value"]
                v["version"] += 1
            if tool == "snakepit.variables.delete":
                del store[v["id"]]
                return ok(None)
            return ok(v)
        if tool == "snakepit.variables.list":
            return ok(list(store.values()))
        raise AssertionError(f"unexpected host call {tool}")

    fid = c.execute("variables_tour", session_id="vars")
    out = result_of(serve(c, {fid}, on_call)[fid])
    assert out["id"] == "var-temperature"
    assert out["value"] == 0.7
    assert out["info"]["constraints"] == {"min": 0.0, "max": 2.0}
    assert out["updated"]["value"] == 0.9 and out["updated"]["version"] == 2
    assert out["listed"] == {"temperature": 0.9}
    assert out["sugar"] == 0.9
    assert out["present"] and out["absent"]
    assert out["missing"] == "KeyError temperature"
    register = seen[0]
    assert register == (
        "snakepit.variables.register",
        {
            "name": "temperature",
            "type": "float",
            "initial_value": 0.7,
            "constraints": {"min": 0.0, "max": 2.0},
            "description": "",
        },
    )
    assert (
        "snakepit.variables.set",
        {"identifier": "temperature", "value": 0.9, "metadata": {"source": "dspy_module"}},
    ) in seen
    assert ("snakepit.variables.set", {"identifier": "temperature", "value": 1.1, "metadata": {}}) in seen


def test_constraint_violation_raises_variable_constraint_error(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    fid = c.execute("set_var", identifier="temperature", value=5.0, session_id="s")
    call = next_host_call(c)
    assert call.host_call.tool == "snakepit.variables.set"
    answer(
        c,
        call,
        err(pb.ERROR_KIND_CONSTRAINT, "5.0 is above max 2.0", parameter="temperature", details={"constraint": "max"}),
    )
    e = c.reply(fid).error
    assert e.python_type == "VariableConstraintError" and e.message == "5.0 is above max 2.0"


def _update(
    watch_id: str, name: str, old: Any, new: Any, *, source: str = "host", version: int = 2, **meta: str
) -> pb.Frame:
    u = pb.VariableUpdate(
        session_id="w",
        watch_id=watch_id,
        variable_id=f"var-{name}",
        name=name,
        version=version,
        source=source,
        metadata=meta,
    )
    if old is not None:
        u.old_value.CopyFrom(encode(old))
    u.new_value.CopyFrom(encode(new))
    return _frames.variable_update(0, u)


def _watch(
    c: WorkerClient, name: str, tag: str, watch_id: str, *, session_id: str = "w", early: tuple[pb.Frame, ...] = ()
) -> None:
    fid = c.execute("watch", identifier=name, tag=tag, include_initial=True, session_id=session_id)
    call = next_host_call(c)
    assert call.host_call.tool == "snakepit.variables.watch"
    assert kwargs_of(call) == {"identifiers": [name], "include_initial": True}
    assert call.host_call.session_id == session_id
    for f in early:
        c.send(f)
    answer(c, call, ok(watch_id))
    assert result_of(c.reply(fid)) == watch_id


def test_variable_updates_reach_watch_callbacks(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    # An update sent right behind the watch's answer reaches the callback.
    fid = c.execute("watch", identifier="temperature", tag="t", include_initial=True, session_id="w")
    call = next_host_call(c)
    answer(c, call, ok("watch-1"))
    c.send(_update("watch-1", "temperature", None, 0.7, source="initial", version=1))
    assert result_of(c.reply(fid)) == "watch-1"
    # An update the host sends before its answer to the watch call is kept for it.
    _watch(c, "mode", "m", "watch-2", early=(_update("watch-2", "mode", None, "fast", source="initial", version=1),))
    c.send(_update("nobody-watches-this", "temperature", 0.7, 0.1))
    c.send(_update("watch-1", "temperature", 0.7, "explode"))  # the callback raises: logged, not fatal
    c.send(_update("watch-1", "temperature", 0.7, 0.9, source="python", why="tuning"))
    events = c.call("watch_events", count=3)
    assert [(e["tag"], e["old"], e["new"]) for e in events] == [
        ("t", None, 0.7),
        ("m", None, "fast"),
        ("t", 0.7, 0.9),
    ]
    assert events[0]["metadata"] == {
        "source": "initial",
        "name": "temperature",
        "variable_id": "var-temperature",
        "version": "1",
        "watch_id": "watch-1",
    }
    assert events[2]["metadata"]["why"] == "tuning" and events[2]["metadata"]["source"] == "python"
    # After unwatch no callback runs for that watch.
    fid = c.execute("unwatch", watch_id="watch-1", session_id="w")
    call = next_host_call(c)
    assert call.host_call.tool == "snakepit.variables.unwatch" and kwargs_of(call) == {"watch_id": "watch-1"}
    answer(c, call, ok(None))
    assert result_of(c.reply(fid)) is None
    c.send(_update("watch-1", "temperature", 0.9, 1.0))
    c.send(_update("watch-2", "mode", "fast", "slow"))
    events = c.call("watch_events", count=4)
    assert [(e["tag"], e["new"]) for e in events[3:]] == [("m", "slow")]
    c.sock.close()
    c.wait_exit()
    assert "callback of variable watch watch-1 ('temperature') raised" in c.stderr_text()


# ------------------------------------------------------------ release hooks


def test_session_release_hook_reports_its_failure(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    c.send(_frames.release_session(70, "ok-1"))
    f = c.reply(70)
    assert f.WhichOneof("kind") == "result" and f.result.value.WhichOneof("kind") == "null"
    c.send(_frames.release_session(71, "boom-1"))
    e = c.reply(71).error
    assert e.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and e.python_type == "RuntimeError"
    assert e.message == "cannot release boom-1" and "on_session_release" in e.traceback
    assert c.call("released") == ["ok-1"]


def test_a_slow_release_hook_does_not_hold_up_the_socket(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    t0 = time.monotonic()
    c.send(_frames.release_session(74, "slow-1"))
    c.send(_frames.ping(75, 1))
    first = c.recv(timeout=5.0)
    assert first.WhichOneof("kind") == "pong" and first.id == 75
    assert time.monotonic() - t0 < 0.5, "the Pong waited for the hook"
    released = c.reply(74)
    assert released.WhichOneof("kind") == "result"
    assert time.monotonic() - t0 >= 0.9


def test_plain_method_release_hook_runs_on_a_new_instance(spawn) -> None:
    c: WorkerClient = spawn("host_call_adapter.PlainHookAdapter")
    c.send(_frames.release_session(72, "p-1"))
    e = c.reply(72).error
    assert e.python_type == "ValueError" and e.message == "plain hook saw p-1"


def test_release_drops_the_sessions_watches(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    _watch(c, "a", "released-session", "watch-a", session_id="gone")
    _watch(c, "b", "live-session", "watch-b", session_id="kept")
    c.send(_frames.release_session(73, "gone"))
    assert c.reply(73).WhichOneof("kind") == "result"
    c.send(_update("watch-a", "a", 1.0, 2.0))
    c.send(_update("watch-b", "b", 1.0, 2.0))
    events = c.call("watch_events", count=1)
    assert [(e["tag"], e["new"]) for e in events] == [("live-session", 2.0)]
