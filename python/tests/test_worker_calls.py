"""Hello, plain calls, values crossing the boundary, and request errors, against real workers."""

from __future__ import annotations

import math
import os

import numpy as np

from snakepit_bridge import _frames
from snakepit_bridge._codec import decode, encode
from snakepit_bridge._proto import snakepit_pb2 as pb
from wire_client import WorkerClient


def tool_spec(c: WorkerClient, name: str) -> pb.ToolSpec:
    assert c.hello is not None
    return next(t for t in c.hello.hello.tools if t.name == name)


def test_hello_describes_worker_and_tools(showcase: WorkerClient) -> None:
    assert showcase.hello is not None
    assert showcase.hello.id == 0
    h = showcase.hello.hello
    assert h.protocol_version == 1
    assert h.pid == showcase.proc.pid
    assert h.profile == "process" and h.capacity == 1
    assert h.adapter == "snakepit_bridge.showcase.ShowcaseAdapter"
    assert h.bridge_version == "0.1.0"
    assert h.max_frame_bytes == 64 * 1024 * 1024
    assert h.python_version and h.python_implementation == "CPython"
    names = {t.name for t in h.tools}
    assert {"echo", "add", "progress", "sleep", "async_sleep", "fail", "noop", "matrix", "describe"} <= names

    add = tool_spec(showcase, "add")
    assert add.description == "Add two numbers; two ints give an int."
    assert [(p.name, p.type, p.required) for p in add.parameters] == [("a", "float", True), ("b", "float", True)]
    progress = tool_spec(showcase, "progress")
    assert progress.supports_streaming
    assert [(p.name, p.type, p.required, decode(p.default_value)) for p in progress.parameters] == [
        ("steps", "int", False, 10),
        ("delay_ms", "int", False, 50),
    ]
    assert tool_spec(showcase, "async_sleep").is_async
    assert not tool_spec(showcase, "echo").supports_streaming


def test_hello_param_types_from_typing_annotations(example: WorkerClient) -> None:
    typed = tool_spec(example, "typed")
    assert [(p.name, p.type) for p in typed.parameters] == [
        ("s", "str"),
        ("i", "int"),
        ("f", "float"),
        ("b", "bool"),
        ("l", "list"),
        ("d", "dict"),
        ("raw", "bytes"),
        ("maybe", "int"),
        ("anything", "any"),
    ]
    assert typed.parameters[7].default_value.WhichOneof("kind") == "null"
    assert tool_spec(example, "takes_array").parameters[0].type == "ndarray"
    many = tool_spec(example, "many")
    assert [p.kind for p in many.parameters] == [pb.PARAM_KIND_VAR_POSITIONAL, pb.PARAM_KIND_VAR_KEYWORD]
    echo = tool_spec(example, "echo")
    assert echo.description == "Echo input"
    assert tool_spec(example, "whoami").description.startswith("Report this instance")


def test_echo_and_add(showcase: WorkerClient) -> None:
    assert showcase.call("echo", message="hi") == "hi"
    assert showcase.call("echo", "positional") == "positional"
    r = showcase.call("add", a=2, b=3)
    assert r == 5 and type(r) is int
    assert showcase.call("add", a=2.5, b=1) == 3.5


def test_values_cross_unchanged(showcase: WorkerClient) -> None:
    cases = [
        10**30,
        -(10**30),
        b"\x00\x01\xff",
        {(1, 2): "t", 3: "i"},
        {1, 2},
        frozenset({"x"}),
        (1, "two"),
        [1, [2, [3]]],
        None,
    ]
    for v in cases:
        assert showcase.call("describe", value=v) == {"type": type(v).__name__, "repr": repr(v)}, v
    assert showcase.call("describe", value=math.nan) == {"type": "float", "repr": "nan"}
    assert showcase.call("describe", value=-math.inf) == {"type": "float", "repr": "-inf"}


def test_bytes_and_ndarray_results(showcase: WorkerClient) -> None:
    b = showcase.call("random_bytes", n=300)
    assert type(b) is bytes and b == bytes(i % 256 for i in range(300))
    m = showcase.call("matrix", rows=3, cols=2)
    assert isinstance(m, np.ndarray) and m.dtype == np.float64 and m.shape == (3, 2)
    assert np.array_equal(m, np.arange(6.0).reshape(3, 2))


def test_ndarray_argument(example: WorkerClient) -> None:
    arr = np.arange(12, dtype=np.int16).reshape(3, 4)
    assert example.call("takes_array", arr=arr) == ["ndarray", "int16", [3, 4]]
    # a list is accepted for an ndarray parameter and converted
    assert example.call("takes_array", arr=[1.0, 2.0]) == ["ndarray", "float64", [2]]


def test_async_tool(showcase: WorkerClient) -> None:
    assert showcase.call("async_sleep", ms=5) == 5


def test_exception_becomes_error(showcase: WorkerClient) -> None:
    f = showcase.call_frame("fail", message="kaput")
    assert f.WhichOneof("kind") == "error"
    e = f.error
    assert e.kind == pb.ERROR_KIND_PYTHON_EXCEPTION
    assert e.python_type == "ValueError"
    assert e.message == "kaput"
    assert "Traceback" in e.traceback and "raise ValueError(message)" in e.traceback
    assert "_worker.py" not in e.traceback
    assert e.details["module"] == "builtins"


def test_unknown_tool_lists_available(showcase: WorkerClient) -> None:
    e = showcase.call_frame("nope").error
    assert e.kind == pb.ERROR_KIND_UNKNOWN_TOOL
    assert "'nope'" in e.message and "echo" in e.message and "add" in e.message


def test_missing_and_unexpected_parameters(showcase: WorkerClient) -> None:
    e = showcase.call_frame("add", a=1).error
    assert e.kind == pb.ERROR_KIND_BAD_ARGUMENTS and e.parameter == "b"
    assert "'b'" in e.message
    e = showcase.call_frame("add", a=1, b=2, c=3).error
    assert e.kind == pb.ERROR_KIND_BAD_ARGUMENTS and e.parameter == "c"
    e = showcase.call_frame("add", 1, 2, 3).error
    assert e.kind == pb.ERROR_KIND_BAD_ARGUMENTS
    e = showcase.call_frame("add", 1, a=2).error
    assert e.kind == pb.ERROR_KIND_BAD_ARGUMENTS and e.parameter == "a"


def test_wrong_types_are_bad_arguments(example: WorkerClient) -> None:
    good = dict(s="x", i=1, f=1, b=True, l=[1.0], d={"k": 1}, raw=b"r")
    assert example.call("typed", **good)["f"] == "int"  # int accepted for float
    assert example.call("typed", **good, maybe=None)["maybe"] == "NoneType"
    for name, bad, expected in [
        ("s", 1, "str"),
        ("i", True, "int"),  # bool is not an int here
        ("i", 1.0, "int"),
        ("f", False, "float"),
        ("b", 1, "bool"),
        ("l", {"a": 1}, "list"),
        ("d", [1], "dict"),
        ("raw", "text", "bytes"),
        ("maybe", "x", "int"),
    ]:
        e = example.call_frame("typed", **{**good, name: bad}).error
        assert e.kind == pb.ERROR_KIND_BAD_ARGUMENTS, (name, bad)
        assert e.parameter == name
        assert expected in e.message and type(bad).__name__ in e.message
        assert e.details["expected"] == expected


def test_variadic_parameters(example: WorkerClient) -> None:
    assert example.call("many", 1, 2, x="y") == {"values": [1, 2], "options": {"x": "y"}}


def test_unencodable_part_of_a_result_becomes_a_marker(example: WorkerClient) -> None:
    # The default --unserializable mode; the error mode: test_serialization.py.
    fid = example.execute("unencodable")
    f = example.recv()
    while f.WhichOneof("kind") == "telemetry":
        f = example.recv()
    assert f.id == fid and f.WhichOneof("kind") == "result"
    assert decode(f.result.value) == {
        "a": [1, 2, {"__ffi_unserializable__": True, "__type__": "builtins.object"}]
    }


def test_session_and_metadata_reach_the_tool(example: WorkerClient) -> None:
    r = example.call("whoami", session_id="sess-1", metadata={"traceparent": "00-abc-01"})
    assert r["session_id"] == "sess-1"
    assert r["metadata"] == {"traceparent": "00-abc-01"}


def test_ping_pong(showcase: WorkerClient) -> None:
    showcase.send(_frames.ping(77, 123456789))
    f = showcase.reply(77)
    assert f.WhichOneof("kind") == "pong"
    assert f.pong.sent_unix_nanos == 123456789
    assert f.pong.in_flight == 0


def test_release_session_and_ref_answer_null(showcase: WorkerClient) -> None:
    showcase.send(_frames.release_session(90, "s"))
    f = showcase.reply(90)
    assert f.WhichOneof("kind") == "result" and f.result.value.WhichOneof("kind") == "null"
    showcase.send(_frames.release_ref(91, "s", "r"))
    assert showcase.reply(91).WhichOneof("kind") == "result"


def test_pipelined_requests_all_answered_once(showcase: WorkerClient) -> None:
    # Answers carry their request's id; their order is not promised (a reply
    # held by one thread may go out after a later one another thread sent).
    expected = {showcase.execute("add", a=i, b=1): i + 1 for i in range(500)}
    answers: dict[int, object] = {}
    while len(answers) < len(expected):
        f = showcase.recv(5.0)
        assert f.id in expected and f.id not in answers, f"unexpected or repeated reply {f}"
        answers[f.id] = decode(f.result.value)
    assert answers == expected


def test_stderr_is_quiet_and_pid_matches(showcase: WorkerClient) -> None:
    assert showcase.proc.poll() is None
    assert os.getpid() != showcase.proc.pid


def test_encode_helper_matches_client(showcase: WorkerClient) -> None:
    # kwargs sent as raw Values decode the same as through encode()
    f = showcase.call_frame("echo", raw_kwargs={"message": encode("raw")})
    assert decode(f.result.value) == "raw"
