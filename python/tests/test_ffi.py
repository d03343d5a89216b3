"""The universal FFI (``snakepit.ffi.*``, docs/ffi-protocol.md) against real workers.

Each test drives a worker over a socketpair; refs are read from the raw wire
values (the test's own codec has no ref store), callbacks are answered by the
test playing the host. The ML error classifier and the ref store are also
tested in-process.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from snakepit_bridge import _frames
from snakepit_bridge._codec import decode, encode
from snakepit_bridge._ffi import RefStore
from snakepit_bridge._ml_errors import classify
from snakepit_bridge._proto import snakepit_pb2 as pb
from snakepit_bridge.errors import RefNotFoundError, SessionMismatchError
from wire_client import TESTS_DIR, ConcurrentClient, Shared, WorkerClient, start_worker

HELPERS = str(TESTS_DIR / "ffi_helpers")
WORKER_ID = "w1"
FFI_OPS = {
    "call",
    "get",
    "call_class",
    "method",
    "attr",
    "set_attr",
    "helper",
    "stream",
    "next",
    "len",
    "repr",
    "enter",
    "exit",
}


# ------------------------------------------------------------------ helpers


class Ref(NamedTuple):
    """An ObjectRef or StreamRef as the worker sent it."""

    kind: str  # "ref" or "stream_ref"
    id: str
    session_id: str
    type_name: str

    def value(self) -> pb.Value:
        if self.kind == "ref":
            return pb.Value(ref=pb.ObjectRef(id=self.id, session_id=self.session_id, type_name=self.type_name))
        return pb.Value(stream_ref=pb.StreamRef(id=self.id, session_id=self.session_id, type_name=self.type_name))


def plain(v: pb.Value) -> Any:
    """Decode a wire value, refs as Ref and callbacks as ("callback", id, arity)."""
    kind = v.WhichOneof("kind")
    if kind == "ref":
        return Ref("ref", v.ref.id, v.ref.session_id, v.ref.type_name)
    if kind == "stream_ref":
        return Ref("stream_ref", v.stream_ref.id, v.stream_ref.session_id, v.stream_ref.type_name)
    if kind == "callback":
        return ("callback", v.callback.id, v.callback.arity)
    if kind == "list":
        return [plain(x) for x in v.list.items]
    if kind == "tuple":
        return tuple(plain(x) for x in v.tuple.items)
    if kind == "map":
        return {plain(e.key): plain(e.value) for e in v.map.entries}
    return decode(v)


def wire(x: Any) -> pb.Value:
    """The wire value of `x`, Refs (also inside lists and dicts) as refs."""
    if isinstance(x, pb.Value):
        return x
    if isinstance(x, Ref):
        return x.value()
    if type(x) is list:
        v = pb.Value()
        v.list.SetInParent()
        for item in x:
            v.list.items.add().CopyFrom(wire(item))
        return v
    if type(x) is dict:
        v = pb.Value()
        v.map.SetInParent()
        for k, item in x.items():
            e = v.map.entries.add()
            e.key.CopyFrom(wire(k))
            e.value.CopyFrom(wire(item))
        return v
    return encode(x)


def send(
    c: WorkerClient,
    op: str,
    *args: Any,
    session_id: str = "",
    stream: bool = False,
    window: int = 0,
    **kwargs: Any,
) -> int:
    """Send an Execute of snakepit.ffi.`op` (or of tool `op` if it is no FFI
    operation's short name), Ref and pb.Value arguments as they are."""
    fid = c.new_id()
    c.send(
        _frames.execute(
            fid,
            f"snakepit.ffi.{op}" if op in FFI_OPS else op,
            args=[wire(a) for a in args],
            kwargs={k: wire(v) for k, v in kwargs.items()},
            session_id=session_id,
            stream=stream,
            stream_window=window,
        )
    )
    return fid


# Telemetry events a client received while waiting for replies, per client.
EVENTS: dict[int, list[pb.TelemetryEvent]] = {}


def reply_to(c: WorkerClient, fid: int) -> pb.Frame:
    """The reply to `fid`, the telemetry events sent for it before set aside."""
    f = c.reply(fid)
    while f.WhichOneof("kind") == "telemetry":
        EVENTS.setdefault(id(c), []).append(f.telemetry)
        f = c.reply(fid)
    return f


def result(c: WorkerClient, op: str, *args: Any, **kwargs: Any) -> Any:
    f = reply_to(c, send(c, op, *args, **kwargs))
    assert f.WhichOneof("kind") == "result", f"expected a result, got {f}"
    return plain(f.result.value)


def error(c: WorkerClient, op: str, *args: Any, **kwargs: Any) -> pb.Error:
    f = reply_to(c, send(c, op, *args, **kwargs))
    assert f.WhichOneof("kind") == "error", f"expected an error, got {f}"
    return f.error


def dropped_events(c: WorkerClient) -> list[dict[str, float]]:
    """Measurements of the `snakepit.ffi.refs.dropped` events `c` received."""
    return [dict(e.measurements) for e in EVENTS.get(id(c), []) if e.name == "snakepit.ffi.refs.dropped"]


def release_ref(c: WorkerClient, ref: Ref, session_id: str | None = None) -> None:
    fid = c.new_id()
    sid = ref.session_id if session_id is None else session_id
    c.send(_frames.release_ref(fid, sid, ref.id))
    assert c.reply(fid).WhichOneof("kind") == "result"


def release_session(c: WorkerClient, session_id: str) -> None:
    fid = c.new_id()
    c.send(_frames.release_session(fid, session_id))
    assert c.reply(fid).WhichOneof("kind") == "result"


def next_host_call(c: WorkerClient, timeout: float = 5.0) -> pb.Frame:
    f = c.recv(timeout)
    assert f.WhichOneof("kind") == "host_call", f"expected a host call, got {f}"
    return f


def answer(c: WorkerClient, call: pb.Frame, value: Any) -> None:
    c.send(_frames.host_call_result(call.id, value=wire(value)))


def callback(cb_id: str, arity: int) -> pb.Value:
    return pb.Value(callback=pb.Callback(id=cb_id, arity=arity))


@pytest.fixture(scope="module")
def shared_ffi() -> Iterator[Shared[WorkerClient]]:
    s = Shared(lambda: start_worker(extra_args=["--worker-id", WORKER_ID, "--helper-dir", HELPERS]))
    yield s
    s.close()


@pytest.fixture
def ffi(shared_ffi: Shared[WorkerClient]) -> WorkerClient:
    """One worker (showcase adapter) with helpers, shared by the tests below."""
    return shared_ffi.live()


# -------------------------------------------------------------- operations


def test_call_get_and_keyword_arguments(ffi: WorkerClient) -> None:
    r = result(ffi, "call", "math", "sqrt", 16)
    assert r == 4.0 and type(r) is float
    assert result(ffi, "call", "builtins", "round", 3.14159, ndigits=2) == 3.14
    assert result(ffi, "get", "math", "pi") == math.pi
    # dotted names
    assert result(ffi, "call", "os", "path.join", "/a", "b") == "/a/b"
    assert result(ffi, "get", "os", "path.sep") == "/"
    assert result(ffi, "call", "builtins", "str", result(ffi, "call", "pathlib", "PurePosixPath", "/a")) == "/a"
    # an async function is awaited
    assert result(ffi, "call", "asyncio", "sleep", 0, "done") == "done"


def test_ffi_tools_are_not_in_the_hello(ffi: WorkerClient) -> None:
    assert ffi.hello is not None
    names = {t.name for t in ffi.hello.hello.tools}
    assert "echo" in names and not any(n.startswith("snakepit.") for n in names)


def test_objects_without_wire_form_are_refs(ffi: WorkerClient) -> None:
    p = result(ffi, "call_class", "pathlib", "Path", "/tmp/x.txt")
    assert isinstance(p, Ref) and p.kind == "ref"
    assert p.type_name == "pathlib.PosixPath" and p.session_id == ""
    prefix, _, n = p.id.partition("/")
    assert prefix == WORKER_ID and n.isdigit() and int(n) >= 1
    assert result(ffi, "attr", p, "name") == "x.txt"
    parent = result(ffi, "attr", p, "parent")
    assert isinstance(parent, Ref) and parent.type_name == "pathlib.PosixPath" and parent.id != p.id
    assert result(ffi, "attr", parent, "name") == "tmp"
    assert result(ffi, "repr", p) == "PosixPath('/tmp/x.txt')"
    assert result(ffi, "method", p, "with_suffix", ".csv") != p  # a new object, a new ref


def test_the_same_object_keeps_its_ref_id(ffi: WorkerClient) -> None:
    a = result(ffi, "get", "pathlib", "Path")
    b = result(ffi, "get", "pathlib", "Path")
    assert a.kind == "ref" and a.type_name == "type" and a == b
    twice = result(ffi, "helper", "shapes.same_twice")
    assert twice[0] == twice[1] and twice[0].type_name == "pathlib.PosixPath"
    # a ref passed back and returned is the same ref
    assert result(ffi, "call", "builtins", "max", [twice[0]], key=a) == twice[0]


def test_methods_on_refs(ffi: WorkerClient) -> None:
    h = result(ffi, "call", "hashlib", "md5", b"abc")
    assert h.kind == "ref"
    assert result(ffi, "method", h, "hexdigest") == "900150983cd24fb0d6963f7d28e17f72"
    d = result(ffi, "call_class", "collections", "deque", [1, 2, 3])
    assert d.type_name == "collections.deque"
    assert result(ffi, "len", d) == 3
    assert result(ffi, "repr", d) == "deque([1, 2, 3])"
    assert result(ffi, "method", d, "append", 4) is None
    assert result(ffi, "call", "builtins", "list", d) == [1, 2, 3, 4]
    # set_attr / attr on a simple namespace
    ns = result(ffi, "call_class", "types", "SimpleNamespace", a=1)
    assert result(ffi, "set_attr", ns, "b", [1, "two"]) is None
    assert result(ffi, "attr", ns, "b") == [1, "two"]
    assert result(ffi, "call", "builtins", "vars", ns) == {"a": 1, "b": [1, "two"]}


def test_values_cross_unchanged(ffi: WorkerClient) -> None:
    for v in [b"\x00\x01\xff", 10**30, -(10**30), {(1, 2): "t", 3: "i"}, (1, "two"), {1, 2}, None, True, "ü"]:
        r = result(ffi, "call", "copy", "deepcopy", v)
        assert r == v and type(r) is type(v), v
    assert math.isnan(result(ffi, "call", "builtins", "float", "nan"))
    # numpy: scalars as numbers, arrays as NdArray
    s = result(ffi, "call", "numpy", "float64", 2.5)
    assert s == 2.5 and type(s) is float
    arr = result(ffi, "call", "numpy", "arange", 6)
    assert isinstance(arr, np.ndarray) and arr.tolist() == list(range(6))
    # an object-dtype array has no wire form: a ref
    obj = result(ffi, "call", "numpy", "array", [1, "a"], dtype="object")
    assert obj.kind == "ref" and obj.type_name == "numpy.ndarray"


def test_containers_keep_values_and_ref_their_leaves(ffi: WorkerClient) -> None:
    p = result(ffi, "call_class", "pathlib", "Path", "/tmp/leaf")
    r = result(ffi, "call", "builtins", "list", [1, p, "x"])
    assert r[0] == 1 and r[2] == "x" and r[1] == p
    r = result(ffi, "call", "builtins", "dict", {"path": p, "n": 2})
    assert r == {"path": p, "n": 2}


def test_cyclic_and_too_deep_values_end_in_a_ref(ffi: WorkerClient) -> None:
    a = result(ffi, "helper", "shapes.cyclic")
    assert a[0] == 1 and isinstance(a[1], Ref) and a[1].type_name == "list"
    # the ref is the list itself
    assert result(ffi, "len", a[1]) == 2
    d = result(ffi, "helper", "shapes.cyclic_dict")
    assert d["name"] == "root" and isinstance(d["self"], Ref) and d["self"].type_name == "dict"
    v = result(ffi, "helper", "shapes.deep", 150)
    depth = 0
    while isinstance(v, list):
        v = v[0]
        depth += 1
    assert isinstance(v, Ref) and v.type_name == "list" and depth == 48  # as deep as a frame can carry
    assert result(ffi, "helper", "shapes.deep", 3) == [[["bottom"]]]


def test_iterators_are_stream_refs(ffi: WorkerClient) -> None:
    s = result(ffi, "call", "itertools", "count", 1)
    assert s.kind == "stream_ref" and s.type_name == "itertools.count"
    assert result(ffi, "next", s, 5) == [1, 2, 3, 4, 5]
    assert result(ffi, "next", s, 5) == [6, 7, 8, 9, 10]
    g = result(ffi, "helper", "shapes.countdown", 3)
    assert g.kind == "stream_ref" and g.type_name == "generator"
    assert result(ffi, "next", g, 2) == [3, 2]
    assert result(ffi, "next", g, 5) == [1]  # shorter: exhausted
    assert result(ffi, "next", g, 5) == []
    # items without a wire form are refs
    m = result(ffi, "call", "builtins", "map", result(ffi, "get", "pathlib", "Path"), ["/a", "/b"])
    assert m.kind == "stream_ref"
    items = result(ffi, "next", m, 3)
    assert len(items) == 2 and all(isinstance(i, Ref) and i.type_name == "pathlib.PosixPath" for i in items)


def test_stream_with_credits(ffi: WorkerClient) -> None:
    fid = send(ffi, "stream", "builtins", "range", 1000, stream=True, window=16)
    items: list[Any] = []
    while True:
        f = ffi.reply(fid)
        assert f.WhichOneof("kind") == "chunk", f
        ch = f.chunk
        if ch.is_final:
            assert not ch.HasField("value") and ch.seq == 1000
            break
        assert ch.seq == len(items)
        items.append(plain(ch.value))
        if len(items) % 8 == 0:
            ffi.credit(fid, 8)
    assert items == list(range(1000))
    # a generator function, refs in chunks
    fid = send(ffi, "stream", "builtins", "map", result(ffi, "get", "pathlib", "Path"), ["/a"], stream=True)
    first = ffi.reply(fid).chunk
    assert plain(first.value).type_name == "pathlib.PosixPath"
    assert ffi.reply(fid).chunk.is_final
    # without Execute.stream: one list
    assert result(ffi, "stream", "builtins", "range", 3) == [0, 1, 2]


def test_stream_credit_window_holds_the_iterator(ffi: WorkerClient) -> None:
    fid = send(ffi, "stream", "itertools", "count", stream=True, window=3)
    assert [plain(ffi.reply(fid).chunk.value) for _ in range(3)] == [0, 1, 2]
    ffi.recv_nothing(0.2)
    ffi.credit(fid, 2)
    assert [plain(ffi.reply(fid).chunk.value) for _ in range(2)] == [3, 4]
    ffi.cancel(fid)
    assert ffi.reply(fid).error.kind == pb.ERROR_KIND_CANCELLED
    assert result(ffi, "call", "math", "sqrt", 4) == 2.0


def test_other_ops_with_execute_stream_answer_one_chunk(ffi: WorkerClient) -> None:
    fid = send(ffi, "call", "math", "sqrt", 9, stream=True)
    ch = ffi.reply(fid).chunk
    assert ch.is_final and plain(ch.value) == 3.0


def test_refs_decode_in_ordinary_tools(ffi: WorkerClient) -> None:
    p = result(ffi, "call_class", "pathlib", "Path", "/tmp/tool")
    f = ffi.reply(send(ffi, "describe", value=p))
    assert decode(f.result.value) == {"type": "PosixPath", "repr": "PosixPath('/tmp/tool')"}
    f = ffi.reply(send(ffi, "echo", Ref("ref", f"{WORKER_ID}/999999", "", "x")))
    assert f.error.kind == pb.ERROR_KIND_NOT_FOUND and f.error.details["ref_id"] == f"{WORKER_ID}/999999"


# -------------------------------------------------------------- ref lifetime


def test_release_ref_then_use_is_not_found(ffi: WorkerClient) -> None:
    p = result(ffi, "call_class", "pathlib", "Path", "/tmp/gone", session_id="rel")
    assert p.session_id == "rel"
    assert result(ffi, "attr", p, "name", session_id="rel") == "gone"
    release_ref(ffi, p)
    e = error(ffi, "attr", p, "name", session_id="rel")
    assert e.kind == pb.ERROR_KIND_NOT_FOUND and e.python_type == "RefNotFoundError"
    assert p.id in e.message and "released" in e.message
    assert e.details["what"] == "ref" and e.details["ref_id"] == p.id and e.details["session_id"] == "rel"
    release_ref(ffi, p)  # twice, or an unknown ref: not an error
    release_ref(ffi, Ref("ref", "nobody/1", "rel", ""))
    # a new object after the release gets a new id
    q = result(ffi, "call_class", "pathlib", "Path", "/tmp/gone", session_id="rel")
    assert q.id != p.id


def test_release_session_drops_its_refs(ffi: WorkerClient) -> None:
    a = result(ffi, "call_class", "pathlib", "Path", "/a", session_id="sess-a")
    b = result(ffi, "call", "itertools", "count", session_id="sess-a")
    other = result(ffi, "call_class", "pathlib", "Path", "/o", session_id="sess-o")
    release_session(ffi, "sess-a")
    for r in (a, b):
        e = error(ffi, "repr", r, session_id="sess-a")
        assert e.kind == pb.ERROR_KIND_NOT_FOUND and e.details["ref_id"] == r.id
    assert result(ffi, "attr", other, "name", session_id="sess-o") == "o"


def test_ref_of_another_session_is_a_session_mismatch(ffi: WorkerClient) -> None:
    p = result(ffi, "call_class", "pathlib", "Path", "/mine", session_id="A")
    e = error(ffi, "attr", p, "name", session_id="B")
    assert e.kind == pb.ERROR_KIND_BAD_ARGUMENTS and e.python_type == "SessionMismatchError"
    assert dict(e.details) == {"what": "session_mismatch", "ref_id": p.id, "ref_session": "A", "call_session": "B"}
    # also in the arguments of an ordinary tool, and nested in a container
    f = ffi.reply(send(ffi, "describe", value=[p], session_id="B"))
    assert f.error.kind == pb.ERROR_KIND_BAD_ARGUMENTS and f.error.details["what"] == "session_mismatch"
    # releasing it from the other session does nothing
    release_ref(ffi, p, session_id="B")
    assert result(ffi, "attr", p, "name", session_id="A") == "mine"


def test_max_refs_evicts_the_least_recently_used(spawn) -> None:
    c = spawn(extra_args=["--max-refs", "3"])
    refs = [result(c, "call_class", "pathlib", "Path", f"/{i}", session_id="s") for i in range(3)]
    assert result(c, "attr", refs[0], "name", session_id="s") == "0"  # refreshes refs[0]
    fourth = result(c, "call_class", "pathlib", "Path", "/3", session_id="s")
    e = error(c, "attr", refs[1], "name", session_id="s")
    assert e.kind == pb.ERROR_KIND_NOT_FOUND and "evicted" in e.message
    for r, name in ((refs[0], "0"), (refs[2], "2"), (fourth, "3")):
        assert result(c, "attr", r, "name", session_id="s") == name
    # The host hears of it: a telemetry event, counted in Prometheus.
    assert dropped_events(c) == [{"evicted": 1.0, "expired": 0.0, "live": 3.0}]
    # per session: another session has its own three
    others = [result(c, "call_class", "pathlib", "Path", f"/o{i}", session_id="t") for i in range(3)]
    assert result(c, "attr", others[0], "name", session_id="t") == "o0"
    assert result(c, "attr", refs[0], "name", session_id="s") == "0"


def test_ref_ttl_expires_unused_refs(spawn) -> None:
    c = spawn(extra_args=["--ref-ttl-ms", "500"])
    kept = result(c, "call_class", "pathlib", "Path", "/kept", session_id="s")
    idle = result(c, "call_class", "pathlib", "Path", "/idle", session_id="s")
    for _ in range(4):
        time.sleep(0.2)
        assert result(c, "attr", kept, "name", session_id="s") == "kept"  # use refreshes
    e = error(c, "attr", idle, "name", session_id="s")
    assert e.kind == pb.ERROR_KIND_NOT_FOUND and "expired" in e.message
    assert sum(d["expired"] for d in dropped_events(c)) >= 1


# --------------------------------------------------------- context managers


def test_context_manager_over_a_file(ffi: WorkerClient, tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    f = result(ffi, "call", "builtins", "open", str(path), "w")
    # An iterator that is a context manager too (a resource) is an ObjectRef.
    assert f.kind == "ref" and f.type_name == "_io.TextIOWrapper"
    assert result(ffi, "enter", f) == f  # __enter__ returns the file itself
    assert result(ffi, "method", f, "write", "hello\nworld\n") == 12
    assert result(ffi, "exit", f, None, None, None) is False
    assert result(ffi, "attr", f, "closed") is True
    assert path.read_text() == "hello\nworld\n"
    # next works on it all the same
    r = result(ffi, "call", "builtins", "open", str(path))
    assert result(ffi, "next", r, 1) == ["hello\n"]
    assert result(ffi, "next", r, 5) == ["world\n"]
    assert result(ffi, "method", r, "close") is None


def test_exit_rebuilds_the_host_error(ffi: WorkerClient) -> None:
    rec = result(ffi, "helper", "ctx.recorder")
    assert rec.type_name.endswith("ctx.Recorder")
    assert result(ffi, "enter", rec) == rec
    assert result(ffi, "exit", rec, "ValueError", "bad value", None) is False
    assert result(ffi, "attr", rec, "got") == ("ValueError", "builtins", "bad value", True, True)
    # not a builtin exception: HostError with the message
    assert result(ffi, "exit", rec, "ShapeMismatch", "from rust", "trace") is False
    assert result(ffi, "attr", rec, "got") == ("HostError", "snakepit_bridge.errors", "from rust", True, True)
    # a builtin name that is no exception class is not used either
    assert result(ffi, "exit", rec, "print", "x", None) is False
    assert result(ffi, "attr", rec, "got")[0] == "HostError"
    # __exit__ suppressing the error answers True
    sup = result(ffi, "helper", "ctx.recorder", True)
    assert result(ffi, "exit", sup, "KeyError", "k", None) is True
    assert result(ffi, "attr", sup, "got")[:3] == ("KeyError", "builtins", "'k'")
    assert result(ffi, "exit", sup, None, None, None) is True
    e = error(ffi, "enter", 5)
    assert e.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and e.python_type == "TypeError"
    assert error(ffi, "exit", rec, 5, None, None).kind == pb.ERROR_KIND_BAD_ARGUMENTS


# ------------------------------------------------------------------ helpers


def test_helpers_load_by_path(ffi: WorkerClient) -> None:
    assert result(ffi, "helper", "math_ops.add", 2, 3) == 5
    assert result(ffi, "helper", "math_ops.scaled", [1, 2], factor=2.0) == [2.0, 4.0]
    p = result(ffi, "helper", "math_ops.point", 1, 2)
    assert p.kind == "ref" and p.type_name.endswith("math_ops.Point")
    assert result(ffi, "attr", p, "y") == 2
    # loaded under a private module name, not as "math_ops"
    assert result(ffi, "helper", "math_ops.module_name").startswith("_snakepit_helper_")
    assert error(ffi, "call", "math_ops", "add", 1, 2).python_type == "ModuleNotFoundError"


@pytest.mark.parametrize(
    "name",
    ["nope.add", "math_ops.nope", "math_ops.not_a_function", "../tests/ffi_helpers/math_ops.add", "a/b.c", "x..y"],
)
def test_missing_helpers_are_not_found(ffi: WorkerClient, name: str) -> None:
    e = error(ffi, "helper", name)
    assert e.kind == pb.ERROR_KIND_NOT_FOUND and e.python_type == "HelperNotFoundError"
    assert dict(e.details) == {"what": "helper", "helper": name}


@pytest.mark.parametrize("name", ["noddot", "", ".add", "math_ops.", "math_ops.1x", 5])
def test_malformed_helper_names_are_bad_arguments(ffi: WorkerClient, name: Any) -> None:
    e = error(ffi, "helper", name)
    assert e.kind == pb.ERROR_KIND_BAD_ARGUMENTS and e.details["what"] == "helper"


def test_helper_that_fails_to_load_raises(ffi: WorkerClient) -> None:
    e = error(ffi, "helper", "broken.anything")
    assert e.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and e.python_type == "RuntimeError"
    assert "broken helper file" in e.message


def test_helper_allowlist(spawn) -> None:
    c = spawn(extra_args=["--helper-dir", HELPERS, "--helper-allow", "math_ops.a*", "--helper-allow", "ctx.recorder"])
    assert result(c, "helper", "math_ops.add", 1, 1) == 2
    assert result(c, "helper", "ctx.recorder").kind == "ref"
    e = error(c, "helper", "math_ops.scaled", [1])
    assert e.kind == pb.ERROR_KIND_NOT_FOUND and "not allowed" in e.message
    assert dict(e.details) == {"what": "helper", "helper": "math_ops.scaled"}
    # no helper directory at all
    d = spawn()
    assert error(d, "helper", "math_ops.add", 1, 1).kind == pb.ERROR_KIND_NOT_FOUND


# ---------------------------------------------------------------- callbacks


def test_callback_argument_calls_the_host(ffi: WorkerClient) -> None:
    fid = send(ffi, "helper", "callbacks.apply", callback("cb7", 2), 3, 4, session_id="cb-s")
    call = next_host_call(ffi)
    hc = call.host_call
    assert hc.tool == "snakepit.callback.cb7" and hc.parent_request_id == fid and hc.session_id == "cb-s"
    assert [plain(a) for a in hc.args] == [3, 4] and not hc.kwargs
    answer(ffi, call, {"sum": 7})
    f = ffi.reply(fid)
    assert plain(f.result.value) == {"sum": 7}


def test_callback_arguments_and_answers_may_be_refs(ffi: WorkerClient) -> None:
    fid = send(ffi, "helper", "callbacks.with_path", callback("cb8", 1), session_id="cb-r")
    call = next_host_call(ffi)
    (arg,) = [plain(a) for a in call.host_call.args]
    assert isinstance(arg, Ref) and arg.type_name == "pathlib.PosixPath" and arg.session_id == "cb-r"
    # the host answers with the ref it got: Python sees the object again
    answer(ffi, call, arg)
    assert plain(ffi.reply(fid).result.value) == arg
    assert result(ffi, "attr", arg, "name", session_id="cb-r") == "for-the-host"


def test_callback_wrong_arity_is_a_type_error(ffi: WorkerClient) -> None:
    e = error(ffi, "helper", "callbacks.apply", callback("cb9", 2), 1)
    assert e.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and e.python_type == "TypeError"
    assert "takes 2 positional arguments but 1 were given" in e.message
    e = error(ffi, "helper", "callbacks.apply_keyword", callback("cb9", 1))
    assert e.python_type == "TypeError" and "keyword" in e.message
    ffi.recv_nothing(0.1)  # no host call was made


def test_callback_encodes_back_to_itself(ffi: WorkerClient) -> None:
    assert result(ffi, "helper", "callbacks.identity", callback("cb10", 3)) == ("callback", "cb10", 3)
    assert result(ffi, "helper", "callbacks.kind", callback("cb10", 3)) == "CallbackProxy callable=True arity=3"
    # ordinary tools get the callable too, and hand it on unchanged
    f = ffi.reply(send(ffi, "describe", value=callback("cb11", 0)))
    assert decode(f.result.value)["type"] == "CallbackProxy"
    fid = send(ffi, "ask_host", name="register", kwargs={"on_done": callback("cb11", 0)})
    call = next_host_call(ffi)
    assert call.host_call.tool == "register"
    assert plain(call.host_call.kwargs["on_done"]) == ("callback", "cb11", 0)
    answer(ffi, call, "ok")
    assert plain(ffi.reply(fid).result.value) == "ok"


# ----------------------------------------------------------------- errors


def test_unknown_ffi_tool_and_no_ffi(ffi: WorkerClient, spawn) -> None:
    e = error(ffi, "snakepit.ffi.nope", 1)
    assert e.kind == pb.ERROR_KIND_UNKNOWN_TOOL
    assert "snakepit.ffi" not in e.details["available"]
    c = spawn(extra_args=["--no-ffi"])
    e = error(c, "call", "math", "sqrt", 4)
    assert e.kind == pb.ERROR_KIND_UNKNOWN_TOOL and "snakepit.ffi.call" in e.message
    assert decode(c.call_frame("echo", message="still").result.value) == "still"


def test_bad_input(ffi: WorkerClient) -> None:
    e = error(ffi, "call", "no_such_module_xyz", "f")
    assert e.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and e.python_type == "ModuleNotFoundError"
    e = error(ffi, "call", "math", "no_such_function")
    assert e.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and e.python_type == "AttributeError"
    assert "no_such_function" in e.message
    e = error(ffi, "get", "math", "nope")
    assert e.python_type == "AttributeError"
    for op, args in [
        ("call", (5, "sqrt")),
        ("call", ("math", ["sqrt"])),
        ("call", ("math",)),
        ("call", ("", "sqrt")),
        ("get", ("math",)),
        ("get", ("math", "pi", "extra")),
        ("attr", (1,)),
        ("method", ("abc", 7)),
        ("next", (5, 1)),
        ("next", (1,)),
    ]:
        e = error(ffi, op, *args)
        assert e.kind == pb.ERROR_KIND_BAD_ARGUMENTS, (op, args, e)
    s = result(ffi, "call", "itertools", "count")
    assert error(ffi, "next", s, -1).parameter == "n"
    assert error(ffi, "next", s, True).kind == pb.ERROR_KIND_BAD_ARGUMENTS
    e = error(ffi, "get", "math", "pi", extra=1)
    assert e.kind == pb.ERROR_KIND_BAD_ARGUMENTS and "keyword" in e.message
    e = error(ffi, "call_class", "math", "sqrt", 4)
    assert e.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and e.python_type == "TypeError" and "not a class" in e.message
    e = error(ffi, "call", "math", "sqrt", "x")
    assert e.python_type == "TypeError" and "Traceback" in e.traceback
    # the worker is fine afterwards
    assert result(ffi, "call", "operator", "add", 1, 2) == 3


def test_numpy_failure_carries_ml_details(ffi: WorkerClient) -> None:
    e = error(ffi, "call", "numpy", "add", [[1, 2, 3], [4, 5, 6]], [[1, 2], [3, 4]])
    assert e.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and e.python_type == "ValueError"
    assert e.details["ml_error"] == "shape_mismatch" and e.details["operation"] == "broadcast"
    assert e.details["shape_a"] == "2,3" and e.details["shape_b"] == "2,2"
    assert e.details["module"] == "builtins"


def test_ml_details_on_adapter_tool_errors(ffi: WorkerClient) -> None:
    f = ffi.call_frame("fail", message="expected scalar type Float but found Double")
    assert f.error.details["ml_error"] == "dtype_mismatch"
    assert f.error.details["expected"] == "float32" and f.error.details["got"] == "float64"
    f = ffi.call_frame("fail", message="kaput")
    assert "ml_error" not in f.error.details


# ------------------------------------------------------------ concurrency


def test_thread_profile_shares_refs_safely(spawn) -> None:
    c = spawn("host_call_adapter.HostCallAdapter", extra_args=["--profile", "thread", "--threads", "8"])
    m = ConcurrentClient(c)
    errors: list[BaseException] = []
    seen: dict[int, set[str]] = {}

    def work(t: int) -> None:
        try:
            ids = set()
            for i in range(30):
                sid = f"s{t % 3}"
                f = m.submit("snakepit.ffi.call_class", "pathlib", "Path", f"/{t}/{i}", session_id=sid).result(5)
                r = plain(f.result.value)
                ids.add(r.id)
                g = m.submit("snakepit.ffi.attr", raw_kwargs=None, session_id=f"s{t % 3}")  # no args: bad arguments
                assert g.result(5).error.kind == pb.ERROR_KIND_BAD_ARGUMENTS
            seen[t] = ids
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    m.close()
    assert not errors, errors
    all_ids = [i for ids in seen.values() for i in ids]
    assert len(all_ids) == len(set(all_ids)) == 8 * 30


def test_ref_store_in_process() -> None:
    store = RefStore("w", max_refs=100)
    obj = object()
    rid = store.put(obj, "s")
    assert rid == "w/1" and store.put(obj, "s") == rid and store.get(rid, "s") is obj
    assert store.put(obj, "t") != rid  # another session, another ref
    with pytest.raises(SessionMismatchError) as mm:
        store.get(rid, "t")
    assert (mm.value.ref_id, mm.value.ref_session, mm.value.call_session) == (rid, "s", "t")
    assert isinstance(mm.value, ValueError)
    assert store.release("s", rid) and not store.release("s", rid)
    with pytest.raises(RefNotFoundError) as nf:
        store.get(rid, "s")
    assert isinstance(nf.value, LookupError) and nf.value.reason == "released"

    errors: list[BaseException] = []
    objs = [object() for _ in range(400)]

    def hammer(k: int) -> None:
        try:
            for i in range(2000):
                o = objs[(i * 7 + k) % len(objs)]
                r = store.put(o, f"h{k % 2}")
                try:
                    assert store.get(r, f"h{k % 2}") is o
                except RefNotFoundError:
                    pass  # evicted by another thread meanwhile
                if i % 50 == 0:
                    store.release(f"h{k % 2}", r)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert len(store.session_ids("h0")) <= 100 and len(store.session_ids("h1")) <= 100
    n = len(store.session_ids("h0"))
    assert store.release_session("h0") == n and store.session_ids("h0") == []


def test_ref_store_ttl_sweeps_idle_sessions() -> None:
    store = RefStore("w", ttl=0.05)
    a = store.put(object(), "idle")
    time.sleep(0.08)
    store.put(object(), "busy")  # an insert sweeps every session
    assert store.session_ids("idle") == []
    with pytest.raises(RefNotFoundError) as nf:
        store.get(a, "idle")
    assert nf.value.reason == "expired"


# ------------------------------------------------------- ML error recognition


class _ArrayMemoryError(MemoryError):
    """Stands in for numpy's (same name, same message)."""


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            ValueError("operands could not be broadcast together with shapes (2,3) (4,5) "),
            {"ml_error": "shape_mismatch", "operation": "broadcast", "shape_a": "2,3", "shape_b": "4,5"},
        ),
        (
            ValueError(
                "operands could not be broadcast together with remapped shapes [original->remapped]: "
                "(2,3)->(2,newaxis,3) (4,5)->(4,5) "
            ),
            {"ml_error": "shape_mismatch", "operation": "broadcast", "shape_a": "2,3", "shape_b": "4,5"},
        ),
        (
            ValueError(
                "matmul: Input operand 1 has a mismatch in its core dimension 0, with gufunc signature "
                "(n?,k),(k,m?)->(n?,m?) (size 4 is different from 3)"
            ),
            {"ml_error": "shape_mismatch", "operation": "matmul", "size_a": "3", "size_b": "4", "core_dimension": "0"},
        ),
        (
            ValueError("shapes (2,3) and (4,5) not aligned: 3 (dim 1) != 4 (dim 0)"),
            {"ml_error": "shape_mismatch", "operation": "dot", "shape_a": "2,3", "shape_b": "4,5"},
        ),
        (
            RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"),
            {"ml_error": "shape_mismatch", "operation": "matmul", "shape_a": "2,3", "shape_b": "4,5"},
        ),
        (
            RuntimeError("The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 1"),
            {"ml_error": "shape_mismatch", "operation": "broadcast", "shape_a": "3", "shape_b": "4", "dimension": "1"},
        ),
        (
            RuntimeError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity; "
                "12.34 GiB already allocated; 1.20 GiB free; 13.00 GiB reserved in total by PyTorch)"
            ),
            {"ml_error": "out_of_memory", "device": "cuda:0", "requested_mib": "2048", "free_mib": "1228.8"},
        ),
        (
            RuntimeError(
                "CUDA out of memory. Tried to allocate 20.00 MiB. GPU 1 has a total capacity of 15.78 GiB "
                "of which 512.00 KiB is free."
            ),
            {"ml_error": "out_of_memory", "device": "cuda:1", "requested_mib": "20", "free_mib": "0.5"},
        ),
        (
            _ArrayMemoryError(
                "Unable to allocate 7.45 GiB for an array with shape (1000000000,) and data type float64"
            ),
            {"ml_error": "out_of_memory", "device": "cpu", "requested_mib": "7628.8"},
        ),
        (
            MemoryError("Unable to allocate 1.50 TiB for an array with shape (200000000000,) and data type float64"),
            {"ml_error": "out_of_memory", "device": "cpu", "requested_mib": "1572864"},
        ),
        (MemoryError(), {"ml_error": "out_of_memory", "device": "cpu"}),
        (
            RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1048576 bytes."),
            {"ml_error": "out_of_memory", "device": "cpu", "requested_mib": "1"},
        ),
        (
            RuntimeError("expected scalar type Float but found Double"),
            {"ml_error": "dtype_mismatch", "expected": "float32", "got": "float64"},
        ),
        (
            RuntimeError("expected m1 and m2 to have the same dtype, but got: float != double"),
            {"ml_error": "dtype_mismatch", "expected": "float32", "got": "float64"},
        ),
        (
            RuntimeError("expected m1 and m2 to have the same dtype, but got: c10::Half != long int"),
            {"ml_error": "dtype_mismatch", "expected": "float16", "got": "int64"},
        ),
        (
            TypeError(
                "Cannot cast ufunc 'add' output from dtype('float64') to dtype('int64') with casting rule 'same_kind'"
            ),
            {"ml_error": "dtype_mismatch", "expected": "int64", "got": "float64"},
        ),
        (
            TypeError("Cannot cast array data from dtype('float64') to dtype('int64') according to the rule 'safe'"),
            {"ml_error": "dtype_mismatch", "expected": "int64", "got": "float64"},
        ),
        (
            RuntimeError("Found dtype Double but expected Float"),
            {"ml_error": "dtype_mismatch", "expected": "float32", "got": "float64"},
        ),
    ],
)
def test_classify_ml_errors(exc: BaseException, expected: dict[str, str]) -> None:
    assert classify(exc) == expected


def test_classify_real_numpy_errors() -> None:
    for f, ml in [
        (lambda: np.ones((2, 3)) + np.ones((4, 5)), "shape_mismatch"),
        (lambda: np.ones((2, 3)) @ np.ones((4, 5)), "shape_mismatch"),
        (lambda: np.add(np.ones(3), 1.5, out=np.zeros(3, dtype=np.int64)), "dtype_mismatch"),
    ]:
        with pytest.raises(Exception) as info:
            f()
        got = classify(info.value)
        assert got is not None and got["ml_error"] == ml, (info.value, got)
    with pytest.raises(MemoryError) as oom:
        np.empty((10**13,), dtype=np.float64)
    got = classify(oom.value)
    assert got is not None and got["device"] == "cpu" and float(got["requested_mib"]) > 7e7


def test_classify_ignores_other_errors_and_never_raises() -> None:
    assert classify(ValueError("invalid literal for int() with base 10: 'x'")) is None
    assert classify(KeyError("shape")) is None
    assert classify(RuntimeError("out of memory?")) is None

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    assert classify(Unprintable()) is None


# ------------------------------------------------------ codec and framing


def test_nesting_is_limited_to_what_a_frame_can_carry() -> None:
    """Deeper values would be refused by the protobuf decoders on either side."""
    from snakepit_bridge._codec import NestingError

    def nested(levels: int, kind: str) -> Any:
        v: Any = 1
        for _ in range(levels):
            v = [v] if kind == "list" else {"k": v}
        return v

    for kind, limit in (("list", 48), ("map", 32)):
        v = encode(nested(limit, kind))
        for frame in (
            pb.Frame(id=1, result=pb.Result(value=v)),
            pb.Frame(id=1, chunk=pb.Chunk(metadata={"m": v})),
            pb.Frame(id=1, execute=pb.Execute(kwargs={"k": v})),
        ):
            assert pb.Frame.FromString(frame.SerializeToString()) == frame
        with pytest.raises(NestingError, match="nested deeper"):
            encode(nested(limit + 1, kind))


def test_hand_written_frames_match_protobuf() -> None:
    """Results and chunks of scalars are serialized by hand on the hot path."""
    from snakepit_bridge import _wire

    limit = 1 << 20
    values = [0, 1, -1, 63, 64, -65, 2**31, -(2**63), 2**63 - 1, 1.5, -0.0, math.inf]
    values += ["", "ü€😀", "x" * 300, True, False]
    for v in values:
        assert _wire.scalar_value_bytes(v) == encode(v).SerializeToString(), v
    assert _wire.scalar_value_bytes(2**63) is None and _wire.scalar_value_bytes("\ud800") is None
    for fid in (1, 300, 70_000):
        for v in values:
            assert _frames.result(fid, v, limit)[4:] == pb.Frame(id=fid, result=pb.Result(value=encode(v))).SerializeToString()
            for seq in (0, 5, 20_000):
                for final in (False, True):
                    want = pb.Frame(id=fid, chunk=pb.Chunk(seq=seq, value=encode(v), is_final=final))
                    assert _frames.chunk(fid, seq, v, True, final, None, limit)[4:] == want.SerializeToString()
