"""Graceful serialization: conversions, markers, their settings, the JSON
encoder, typed variables, and the worker's --unserializable modes through
real workers (tests/serialization_adapter.py)."""

from __future__ import annotations

import collections
import datetime
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from snakepit_bridge import _frames, _graceful, serialization
from snakepit_bridge._codec import WIRE_DEPTH, EncodingError, decode, encode
from snakepit_bridge._config import parse_args
from snakepit_bridge._proto import snakepit_pb2 as pb
from snakepit_bridge.serialization import (
    REPR_KEY,
    TYPE_KEY,
    UNSERIALIZABLE_KEY,
    GracefulJSONEncoder,
    TypeSerializer,
    convert,
    make_marker,
)
from wire_client import WorkerClient

ADAPTER = "serialization_adapter.SerializationAdapter"


@pytest.fixture(autouse=True)
def _default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (serialization.DETAIL_ENV, serialization.REPR_MAXLEN_ENV, serialization.TOLIST_MAX_ENV):
        monkeypatch.delenv(name, raising=False)


class Plain:
    pass


def marker_of(type_name: str) -> dict[str, Any]:
    return {UNSERIALIZABLE_KEY: True, TYPE_KEY: type_name}


PLAIN = marker_of(f"{__name__}.Plain")


# ---------------------------------------------------------------- conversion


class Everything:
    def model_dump(self) -> Any:
        return "model_dump"

    def to_dict(self) -> Any:
        return "to_dict"

    def _asdict(self) -> Any:
        return "_asdict"

    def tolist(self) -> Any:
        return ["tolist"]

    def isoformat(self) -> Any:
        return "isoformat"


def test_conversion_methods_are_tried_in_the_documented_order() -> None:
    assert serialization.CONVERSION_METHODS == ("model_dump", "to_dict", "_asdict", "tolist", "isoformat")
    obj = Everything()
    seen = []
    for name in serialization.CONVERSION_METHODS:
        ok, value = convert(obj)
        assert ok
        seen.append(value)
        # Take the winning method away: the next one wins.
        setattr(obj, name, None)
    assert seen == ["model_dump", "to_dict", "_asdict", ["tolist"], "isoformat"]
    assert convert(obj) == (False, None)


def test_a_method_that_raises_is_skipped_and_classes_are_not_converted() -> None:
    class Broken:
        def model_dump(self) -> Any:
            raise RuntimeError("no")

        def to_dict(self) -> Any:
            return {"ok": 1}

    assert convert(Broken()) == (True, {"ok": 1})
    assert convert(Everything) == (False, None)
    assert convert(Plain()) == (False, None)


def test_tolist_guard_checks_numpy_arrays_before_calling_tolist(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class Tracked(np.ndarray):
        def tolist(self) -> Any:
            calls.append(self.size)
            return super().tolist()

    monkeypatch.setenv(serialization.TOLIST_MAX_ENV, "10")
    small = np.arange(10).view(Tracked)
    big = np.arange(11).view(Tracked)
    assert convert(small) == (True, list(range(10)))
    assert convert(big) == (False, None)
    assert calls == [10]  # the big one's tolist() never ran


def test_tolist_guard_heuristics_for_sparse_and_pandas_like_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class Sparse:
        nnz = 3
        shape = (1000, 1000)

        def tolist(self) -> Any:
            calls.append("sparse")
            return [0] * 10

    class Frame:
        size = 2_000_000
        values = None

        def tolist(self) -> Any:
            calls.append("frame")
            return []

    assert convert(Sparse()) == (True, [0] * 10)  # 1e6 dense elements: at the default limit
    assert convert(Frame()) == (False, None)
    monkeypatch.setenv(serialization.TOLIST_MAX_ENV, "999999")
    assert convert(Sparse()) == (False, None)
    assert calls == ["sparse"]


def test_tolist_guard_counts_the_result_of_unknown_types(monkeypatch: pytest.MonkeyPatch) -> None:
    class Grid:
        def tolist(self) -> Any:
            return [[1, 2, 3], [4, 5, 6]]

    monkeypatch.setenv(serialization.TOLIST_MAX_ENV, "6")
    assert convert(Grid()) == (True, [[1, 2, 3], [4, 5, 6]])
    monkeypatch.setenv(serialization.TOLIST_MAX_ENV, "5")
    assert convert(Grid()) == (False, None)
    assert serialization.tolist_max_elements() == 5
    monkeypatch.setenv(serialization.TOLIST_MAX_ENV, "lots")
    assert serialization.tolist_max_elements() == 1_000_000


# ------------------------------------------------------------------- markers


class APIClient:
    def __repr__(self) -> str:
        return "APIClient(api_key='sk-abc123xyz789', token='Bearer eyJ...')"


def test_marker_shape_and_type_name() -> None:
    assert make_marker(Plain()) == PLAIN
    assert make_marker(object()) == marker_of("builtins.object")
    assert make_marker(Plain) == marker_of("builtins.type")
    assert serialization.is_unserializable_marker(PLAIN)
    assert not serialization.is_unserializable_marker({UNSERIALIZABLE_KEY: 1, TYPE_KEY: "x"})
    assert not serialization.is_unserializable_marker([PLAIN])
    assert serialization.unserializable_info(PLAIN) == {"type": f"{__name__}.Plain", "repr": None}
    with pytest.raises(ValueError):
        serialization.unserializable_info({"a": 1})


def test_detail_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert serialization.detail_mode() == "none"
    assert REPR_KEY not in make_marker(APIClient())
    monkeypatch.setenv(serialization.DETAIL_ENV, "type")
    m = make_marker(APIClient())
    assert m[REPR_KEY] == f"<unserializable {__name__}.APIClient>" and "sk-" not in m[REPR_KEY]
    monkeypatch.setenv(serialization.DETAIL_ENV, "repr_truncated")
    assert make_marker(APIClient())[REPR_KEY] == repr(APIClient())
    monkeypatch.setenv(serialization.DETAIL_ENV, "repr_redacted_truncated")
    assert make_marker(APIClient()) == {
        UNSERIALIZABLE_KEY: True,
        TYPE_KEY: f"{__name__}.APIClient",
        REPR_KEY: "APIClient(api_key='sk-<REDACTED>', token='Bearer <REDACTED>')",
    }
    monkeypatch.setenv(serialization.DETAIL_ENV, "everything")
    assert serialization.detail_mode() == "none" and REPR_KEY not in make_marker(APIClient())


def test_redaction_of_json_style_credentials() -> None:
    text = """{"api_key": "abc", "password": "hunter2", 'secret': 'x\\'y', "user": "bob"}"""
    assert serialization.redact(text) == (
        """{"api_key": "<REDACTED>", "password": "<REDACTED>", 'secret': '<REDACTED>', "user": "bob"}"""
    )
    assert serialization.redact("task-list sk-short") == "task-list sk-short"


def test_repr_length_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    class Long:
        def __repr__(self) -> str:
            return "x" * 5000

    monkeypatch.setenv(serialization.DETAIL_ENV, "repr_truncated")
    assert serialization.repr_maxlen() == 500
    r = make_marker(Long())[REPR_KEY]
    assert len(r) == 500 and r.endswith("...")
    monkeypatch.setenv(serialization.REPR_MAXLEN_ENV, "200")
    assert len(make_marker(Long())[REPR_KEY]) == 200
    monkeypatch.setenv(serialization.REPR_MAXLEN_ENV, "99999")
    assert len(make_marker(Long())[REPR_KEY]) == 2000
    for bad in ("0", "-5", "many"):
        monkeypatch.setenv(serialization.REPR_MAXLEN_ENV, bad)
        assert serialization.repr_maxlen() == 500


def test_a_failing_repr_still_gives_a_marker(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoRepr:
        def __repr__(self) -> str:
            raise RuntimeError("boom")

    monkeypatch.setenv(serialization.DETAIL_ENV, "repr_truncated")
    m = make_marker(NoRepr())
    assert m[TYPE_KEY].endswith("NoRepr") and "RuntimeError" in m[REPR_KEY]


def test_marker_telemetry_is_sent_once_per_type(monkeypatch: pytest.MonkeyPatch) -> None:
    from snakepit_bridge import telemetry

    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(telemetry, "emit", lambda *a: sent.append(a))
    monkeypatch.setattr(serialization, "_seen_types", set())

    class Once:
        pass

    make_marker(Once())
    make_marker(Once())
    assert sent == [(serialization.MARKER_EVENT, {"first_seen": 1}, {"type": f"{__name__}.{Once.__qualname__}"})]
    monkeypatch.setattr(telemetry, "emit", lambda *a: 1 / 0)

    class Other:
        pass

    assert make_marker(Other())[TYPE_KEY].endswith("Other")  # telemetry failures never matter


# ---------------------------------------------------------------------- JSON


class MyResponse:
    def __init__(self, data: Any, status: int) -> None:
        self.data, self.status = data, status

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "status": self.status}


def test_graceful_json_encoder() -> None:
    Point = collections.namedtuple("Point", "x y")
    value = {
        "timestamp": datetime.datetime(2024, 1, 11, 10, 30),
        "count": 42,
        "items": ["a", "b", "c"],
        "response": MyResponse("hello", 200),
        "internal": Plain(),
        "arr": np.array([[1, 2], [3, 4]]),
        "point": Point(1, 2),
    }
    out = json.dumps(value, cls=GracefulJSONEncoder)
    assert json.loads(out) == {
        "timestamp": "2024-01-11T10:30:00",
        "count": 42,
        "items": ["a", "b", "c"],
        "response": {"data": "hello", "status": 200},
        "internal": PLAIN,
        "arr": [[1, 2], [3, 4]],
        "point": [1, 2],
    }
    assert json.dumps(Plain(), cls=GracefulJSONEncoder) == (
        '{"__ffi_unserializable__": true, "__type__": "' + __name__ + '.Plain"}'
    )


def test_json_encoder_survives_cycles_and_endless_conversions() -> None:
    class Endless:
        def to_dict(self) -> Any:
            return {"next": Endless()}

    loop: list[Any] = []
    loop.append(loop)
    out = json.loads(json.dumps({"e": Endless(), "s": {1, 2}}, cls=GracefulJSONEncoder))
    depth = 0
    node = out["e"]
    while "next" in node:
        node = node["next"]
        depth += 1
    assert node[TYPE_KEY].endswith("Endless") and depth <= 100
    assert out["s"] == marker_of("builtins.set")
    assert serialization.to_jsonable(loop) == [marker_of("builtins.list")]


# ---------------------------------------------------------------- wire walk


def walked(value: Any) -> Any:
    out = pb.Value()
    _graceful.encode_with_markers(value, out, "result")
    return decode(out)


def test_wire_types_keep_their_wire_form() -> None:
    when = datetime.datetime(2024, 1, 11, 10, 30)
    arr = np.arange(6, dtype=np.int32).reshape(2, 3)
    value = {
        "when": when,
        "big": 2**70,
        "f": 1.5,
        "b": b"\x00",
        "t": (1, 2),
        "s": {3},
        "c": 1j,
        "arr": arr,
        "np": np.float32(2.5),
        "obj": Plain(),
        1: "int key",
    }
    got = walked(value)
    assert got["when"] == when and got["big"] == 2**70 and got["b"] == b"\x00"
    assert got["t"] == (1, 2) and got["s"] == {3} and got["c"] == 1j and got["np"] == 2.5 and got[1] == "int key"
    assert got["arr"].dtype == np.int32 and (got["arr"] == arr).all()
    assert got["obj"] == PLAIN


def test_converted_values_are_walked_again() -> None:
    class Outer:
        def model_dump(self) -> Any:
            return {"inner": MyResponse(Plain(), 1), "when": datetime.date(2024, 1, 1)}

    assert walked([Outer()]) == [{"inner": {"data": PLAIN, "status": 1}, "when": datetime.date(2024, 1, 1)}]
    objects = np.array([Plain(), 1], dtype=object)
    assert walked(objects) == [PLAIN, 1]


def test_cycles_and_depth_are_bounded() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    assert walked(loop) == [1, marker_of("builtins.list")]

    class Endless:
        def to_dict(self) -> Any:
            return Endless()

    assert walked(Endless())[TYPE_KEY].endswith("Endless")

    deep: Any = Plain()
    for _ in range(200):
        deep = [deep]
    got = walked(deep)
    levels = 0
    while isinstance(got, list):
        got = got[0]
        levels += 1
    assert got == marker_of("builtins.list") and levels * 2 + 3 <= WIRE_DEPTH


def test_bad_text_still_fails_with_its_path() -> None:
    with pytest.raises(EncodingError) as info:
        walked({"obj": Plain(), "name": "caf\udce9"})
    assert info.value.path == "result['name']" and info.value.python_type == "str"


def test_result_frames_by_mode() -> None:
    fine = {"a": [1, 2.5, "x"], "when": datetime.date(2024, 1, 1)}
    plain = _frames.result(1, fine, 1 << 20)
    assert _frames.result(1, fine, 1 << 20, "marker") == plain
    assert _frames.result(1, fine, 1 << 20, "ref") == plain
    chunk = _frames.chunk(1, 2, fine, True, False, {"m": 1}, 1 << 20)
    assert _frames.chunk(1, 2, fine, True, False, {"m": 1}, 1 << 20, "marker") == chunk

    def parse(frame: bytes) -> pb.Frame:
        f = pb.Frame()
        f.ParseFromString(frame[frame.index(b"\x08") :])
        return f

    bad = {"a": [1, Plain()]}
    err = parse(_frames.result(1, bad, 1 << 20, "error")).error
    assert err.kind == pb.ERROR_KIND_ENCODING and err.details["path"] == "result['a'][1]"
    assert f"{__name__}.Plain" in err.message
    assert decode(parse(_frames.result(1, bad, 1 << 20, "marker")).result.value) == {"a": [1, PLAIN]}
    # Chunk metadata is never marked: it must encode.
    with pytest.raises(EncodingError) as info:
        _frames.chunk(1, 0, bad, True, False, {"m": Plain()}, 1 << 20, "marker")
    assert info.value.path == "chunk[0].metadata['m']"
    marked = parse(_frames.chunk(1, 0, bad, True, False, {"m": 1}, 1 << 20, "marker")).chunk
    assert decode(marked.value) == {"a": [1, PLAIN]} and decode(marked.metadata["m"]) == 1


# ---------------------------------------------------------------- variables


def test_type_serializer_round_trips() -> None:
    for value, var_type in [
        (1.5, "float"),
        (3, "integer"),
        ("hi", "string"),
        (True, "boolean"),
        ("b", "choice"),
        ([0.5, 1.5], "embedding"),
        ({"shape": [2, 2], "data": [[1.0, 2.0], [3.0, 4.0]]}, "tensor"),
    ]:
        msg, binary = TypeSerializer.encode_any(value, var_type)
        assert binary is None and msg.type_url == f"type.googleapis.com/snakepit.{var_type}"
        assert TypeSerializer.decode_any(msg, binary) == value
    msg, _ = TypeSerializer.encode_any(math.inf, "float")
    assert json.loads(msg.value) == "Infinity" and TypeSerializer.decode_any(msg) == math.inf
    assert math.isnan(TypeSerializer.decode_any(TypeSerializer.encode_any(math.nan, "float")[0]))
    assert TypeSerializer.encode_any(4.0, "integer")[0].value == b"4"
    with pytest.raises(ValueError):
        TypeSerializer.encode_any("x", "float")


def test_type_serializer_sends_large_arrays_as_binary() -> None:
    arr = np.arange(2 * 1000, dtype=np.float64).reshape(2, 1000)
    assert arr.size * 8 > serialization.BINARY_THRESHOLD
    msg, binary = TypeSerializer.encode_any(arr, "tensor")
    assert msg.type_url.endswith("snakepit.tensor.binary") and binary is not None and len(binary) == arr.size * 8
    back = TypeSerializer.decode_any(msg, binary)
    assert back["shape"] == [2, 1000] and (np.array(back["data"]) == arr).all()
    emb = [float(i) for i in range(2000)]
    msg, binary = TypeSerializer.encode_any(emb, "embedding")
    assert binary is not None and TypeSerializer.decode_any(msg, binary) == emb


def test_type_serializer_constraints() -> None:
    TypeSerializer.validate_constraints(5, "integer", {"min": 1, "max": 5})
    with pytest.raises(ValueError):
        TypeSerializer.validate_constraints(6, "integer", {"max": 5})
    with pytest.raises(ValueError):
        TypeSerializer.validate_constraints("ab", "string", {"min_length": 3})
    with pytest.raises(ValueError):
        TypeSerializer.validate_constraints("c", "choice", {"choices": ["a", "b"]})
    with pytest.raises(ValueError):
        TypeSerializer.validate_constraints([1.0], "embedding", {"dimensions": 2})
    with pytest.raises(ValueError):
        TypeSerializer.validate_constraints({"shape": [2], "data": [1, 2]}, "tensor", {"shape": [3]})


# ------------------------------------------------------------------- worker


def test_unserializable_option() -> None:
    assert parse_args(["--adapter", "m.C"]).unserializable == "marker"
    assert parse_args(["--adapter", "m.C", "--unserializable", "ref"]).unserializable == "ref"
    with pytest.raises(SystemExit):
        parse_args(["--adapter", "m.C", "--unserializable", "pickle"])


def reply(c: WorkerClient, fid: int, events: list[pb.TelemetryEvent] | None = None) -> pb.Frame:
    """The next frame of request `fid`, telemetry set aside (in `events`)."""
    while True:
        f = c.recv()
        if f.WhichOneof("kind") == "telemetry":
            if events is not None:
                events.append(f.telemetry)
            continue
        assert f.id == fid, f"expected a reply to {fid}, got {f}"
        return f


def result_of(c: WorkerClient, tool: str, **kwargs: Any) -> pb.Frame:
    return reply(c, c.execute(tool, **kwargs))


def test_marker_mode_through_a_worker(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn(ADAPTER)
    fid = c.execute("mixed")
    events: list[pb.TelemetryEvent] = []
    f = reply(c, fid, events)
    assert [(e.name, decode(e.metadata["type"]), e.measurements["first_seen"]) for e in events] == [
        (serialization.MARKER_EVENT, "serialization_adapter.InternalState", 1.0)
    ]
    internal = marker_of("serialization_adapter.InternalState")
    assert decode(f.result.value) == {
        "timestamp": datetime.datetime(2024, 1, 11, 10, 30),
        "count": 42,
        "items": ["a", "b", "c"],
        "blob": b"\x00\x01",
        "response": {"data": "hello", "status": 200, "state": internal},
        "internal": internal,
    }
    assert c.call("plain") == {"count": 42, "items": [1.5, "x", None], "when": datetime.date(2024, 1, 11)}

    got = decode(result_of(c, "cyclic").result.value)
    assert got["loop"] == [1, marker_of("builtins.list")]
    assert got["endless"] == marker_of("serialization_adapter.Endless")
    deep = decode(result_of(c, "deep").result.value)
    while isinstance(deep, list):
        deep = deep[0]
    assert deep == marker_of("builtins.list")

    e = result_of(c, "bad_text").error
    assert e.kind == pb.ERROR_KIND_ENCODING and e.details["path"] == "result['name']"


def test_stream_items_become_markers(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn(ADAPTER)
    fid = c.execute("items", stream=True)
    chunks = []
    while not chunks or not chunks[-1].is_final:
        chunks.append(reply(c, fid).chunk)
    assert [decode(ch.value) for ch in chunks] == [
        {"i": 0},
        {"i": 1, "obj": marker_of("serialization_adapter.InternalState")},
        {"i": 2, "response": {"data": "x", "status": 1, "state": marker_of("serialization_adapter.InternalState")}},
    ]
    # Called without streaming: the items as one result.
    assert len(decode(result_of(c, "items").result.value)) == 3


def test_detail_settings_reach_the_worker(spawn: Callable[..., WorkerClient], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(serialization.DETAIL_ENV, "repr_redacted_truncated")
    monkeypatch.setenv(serialization.REPR_MAXLEN_ENV, "40")
    c = spawn(ADAPTER)
    [m] = decode(result_of(c, "secret").result.value)
    assert m[TYPE_KEY] == "serialization_adapter.APIClient"
    assert m[REPR_KEY] == "APIClient(api_key='sk-<REDACTED>', to..."


def test_error_mode(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn(ADAPTER, extra_args=["--unserializable", "error"])
    e = c.call_frame("mixed").error
    assert e.kind == pb.ERROR_KIND_ENCODING
    # MyResponse converts (to_dict); what it holds that cannot fails the call.
    assert "serialization_adapter.InternalState" in e.message
    assert e.details["path"] == "result['response']['state']"
    fid = c.execute("items", stream=True)
    assert decode(c.reply(fid).chunk.value) == {"i": 0}
    e = c.reply(fid).error
    assert e.kind == pb.ERROR_KIND_ENCODING and e.details["path"] == "chunk[1]['obj']"
    assert c.call("plain")["count"] == 42


def test_ref_mode(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn(ADAPTER, extra_args=["--unserializable", "ref", "--worker-id", "w1"])
    v = c.call_frame("mixed", session_id="s1").result.value
    entries = {e.key.str: e.value for e in v.map.entries}
    assert decode(entries["count"]) == 42
    assert decode(entries["timestamp"]) == datetime.datetime(2024, 1, 11, 10, 30)
    for key, type_name in (("internal", "serialization_adapter.InternalState"), ("response", "serialization_adapter.MyResponse")):
        ref = entries[key].ref
        assert ref.type_name == type_name and ref.session_id == "s1" and ref.id.startswith("w1/")
    # The ref names the object itself, for the FFI to use.
    fid = c.new_id()
    c.send(
        _frames.execute(
            fid,
            "snakepit.ffi.attr",
            args=[pb.Value(ref=entries["response"].ref), encode("data")],
            kwargs={},
            session_id="s1",
        )
    )
    assert decode(reply(c, fid).result.value) == "hello"
    fid = c.execute("items", stream=True, session_id="s1")
    chunks = [reply(c, fid).chunk for _ in range(3)]
    obj = {e.key.str: e.value for e in chunks[1].value.map.entries}["obj"].ref
    assert obj.type_name == "serialization_adapter.InternalState" and obj.session_id == "s1"
    assert chunks[2].is_final
