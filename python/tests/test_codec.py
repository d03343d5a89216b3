"""Pure codec tests: Python objects <-> snakepit.v1.Value."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pytest

from snakepit_bridge._codec import DecodingError, EncodingError, decode, encode
from snakepit_bridge._proto import snakepit_pb2 as pb


def roundtrip(obj: Any) -> Any:
    return decode(pb.Value.FromString(encode(obj).SerializeToString()))


@pytest.mark.parametrize(
    "obj",
    [
        None,
        True,
        False,
        0,
        -1,
        2**63 - 1,
        -(2**63),
        1.5,
        "héllo",
        b"\x00\xff",
        [1, "a", None],
        (1, 2),
        {1, 2, 3},
        frozenset({"a"}),
        {"a": 1, "b": [1, 2]},
        [],
        (),
        set(),
        frozenset(),
        {},
        {"empty": [[], {}, ()]},
        1 + 2j,
        dt.datetime(2024, 5, 6, 7, 8, 9, 123456),
        dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.date(2024, 2, 29),
        dt.time(23, 59, 1, 5),
        dt.timedelta(days=-3, seconds=5, microseconds=7),
    ],
)
def test_roundtrip_preserves_value_and_type(obj: Any) -> None:
    back = roundtrip(obj)
    assert back == obj
    assert type(back) is type(obj)


def test_wire_kinds() -> None:
    assert encode(None).WhichOneof("kind") == "null"
    assert encode(True).WhichOneof("kind") == "bool"
    assert encode(3).WhichOneof("kind") == "int"
    assert encode(3.0).WhichOneof("kind") == "float"
    assert encode(bytearray(b"x")).WhichOneof("kind") == "bytes"
    assert encode(memoryview(b"x")).WhichOneof("kind") == "bytes"
    assert encode((1,)).WhichOneof("kind") == "tuple"
    assert encode(dt.timedelta(seconds=1, microseconds=2)).temporal.text == "1000002"
    assert encode(dt.date(2020, 1, 2)).temporal.kind == pb.TEMPORAL_KIND_DATE


@pytest.mark.parametrize("n", [2**63, -(2**63) - 1, 10**30, -(10**30), 2**200])
def test_big_ints(n: int) -> None:
    v = encode(n)
    assert v.WhichOneof("kind") == "big_int"
    assert v.big_int == n.to_bytes(len(v.big_int), "big", signed=True)
    assert roundtrip(n) == n


def test_big_int_is_minimal_twos_complement() -> None:
    assert encode(2**63).big_int == b"\x00\x80" + b"\x00" * 7
    assert encode(-(2**63) - 1).big_int == b"\xff\x7f" + b"\xff" * 7


def test_float_specials() -> None:
    assert roundtrip(math.inf) == math.inf
    assert roundtrip(-math.inf) == -math.inf
    assert math.isnan(roundtrip(math.nan))


def test_map_keys_any_hashable_and_order_kept() -> None:
    d = {(1, 2): "tuple", 3: "int", "s": "str", None: "none", frozenset({1}): "fs"}
    back = roundtrip(d)
    assert back == d
    assert list(back) == list(d)


def test_list_keys_become_tuples() -> None:
    v = pb.Value()
    e = v.map.entries.add()
    e.key.list.items.add().int = 1
    e.key.list.items.add().list.items.add().int = 2
    e.value.str = "x"
    assert decode(v) == {(1, (2,)): "x"}


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(6, dtype=np.float64).reshape(2, 3),
        np.arange(4, dtype=np.int32),
        np.array([[1, 2], [3, 4]], dtype=np.uint8).T,  # not C-contiguous
        np.array([True, False]),
        np.array([1 + 2j, 3 - 4j], dtype=np.complex128),
        np.zeros((0, 3), dtype=np.float32),
        np.arange(3, dtype=">i8"),  # big-endian input
    ],
)
def test_ndarray_roundtrip(arr: np.ndarray) -> None:
    v = encode(arr)
    assert v.ndarray.dtype == arr.dtype.name
    assert list(v.ndarray.shape) == list(arr.shape)
    back = roundtrip(arr)
    assert isinstance(back, np.ndarray)
    assert back.dtype == arr.dtype.newbyteorder("=")
    assert back.shape == arr.shape
    assert np.array_equal(back, arr)
    assert back.flags.writeable


def test_ndarray_data_is_little_endian() -> None:
    assert encode(np.array([1], dtype=">u2")).ndarray.data == b"\x01\x00"


def test_numpy_scalars_become_python_values() -> None:
    assert encode(np.float32(1.5)).WhichOneof("kind") == "float"
    assert roundtrip(np.int64(7)) == 7
    assert type(roundtrip(np.bool_(True))) is bool


def test_unencodable_names_type_and_path() -> None:
    with pytest.raises(EncodingError) as info:
        encode({"a": [1, 2, object()]}, root="result")
    assert isinstance(info.value, TypeError)
    assert "object" in str(info.value)
    assert info.value.path == "result['a'][2]"
    assert "result['a'][2]" in str(info.value)


def test_object_array_is_rejected() -> None:
    with pytest.raises(EncodingError):
        encode(np.array([object()], dtype=object))


def test_cyclic_container_raises_encoding_error() -> None:
    a: list[Any] = []
    a.append(a)
    with pytest.raises(EncodingError, match="nested deeper"):
        encode(a)
    d: dict[str, Any] = {}
    d["self"] = d
    with pytest.raises(EncodingError):
        encode(d)


def test_on_unserializable_hook_can_fill_the_value() -> None:
    class Thing:
        pass

    def as_ref(obj: Any, out: pb.Value) -> None:
        out.ref.id = "ref-1"
        out.ref.type_name = type(obj).__name__

    v = encode([Thing()], on_unserializable=as_ref)
    assert v.list.items[0].ref.type_name == "Thing"


def test_subclasses_encode_as_their_base() -> None:
    import collections
    import enum

    class Color(enum.IntEnum):
        RED = 1

    assert roundtrip(Color.RED) == 1
    assert roundtrip(collections.OrderedDict(a=1)) == {"a": 1}


def test_bad_ndarray_payload_is_a_decoding_error() -> None:
    v = pb.Value()
    v.ndarray.dtype = "float64"
    v.ndarray.shape.extend([2])
    v.ndarray.data = b"\x00" * 3
    with pytest.raises(DecodingError):
        decode(v)
    v.ndarray.dtype = "no-such-dtype"
    with pytest.raises(DecodingError):
        decode(v)
