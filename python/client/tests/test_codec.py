"""The client's codec: round trips, agreement with the worker's codec (the
bridge, installed in the test venv), the limits it enforces before sending."""

from __future__ import annotations

import datetime as dt
import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import snakepit_client as sp
from snakepit_client import _codec
from snakepit_client._proto import snakepit_pb2 as pb

bridge_codec = pytest.importorskip("snakepit_bridge._codec")


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to itself and the types kept (1 is not True, [] is not ())."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


_DAY = dt.timedelta(hours=23, minutes=59)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
    st.binary(),
    st.complex_numbers(allow_nan=False),
    # Fixed offsets: ISO text keeps the offset, not the zone (a zone's
    # nonexistent or repeated local times would not compare equal).
    st.datetimes(timezones=st.one_of(st.none(), st.builds(dt.timezone, st.timedeltas(-_DAY, _DAY)))),
    st.dates(),
    st.times(),
    st.timedeltas(),
)
hashables = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**100), max_value=2**100),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.tuples(st.integers(), st.text(max_size=4)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
        st.dictionaries(hashables, inner, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_every_value_round_trips_with_its_type(value: Any) -> None:
    wire = pb.Value.FromString(_codec.encode(value).SerializeToString())
    assert same(_codec.decode(wire), value)


@settings(max_examples=200, deadline=None)
@given(values)
def test_the_worker_reads_what_the_client_writes_and_back(value: Any) -> None:
    assert same(bridge_codec.decode(_codec.encode(value)), value)
    assert same(_codec.decode(bridge_codec.encode(value)), value)


@pytest.mark.parametrize("n", [2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64, -(2**1000), 10**40])
def test_ints_beyond_64_bits_are_big_endian_twos_complement(n: int) -> None:
    v = _codec.encode(n)
    if -(2**63) <= n < 2**63:
        assert v.WhichOneof("kind") == "int"
    else:
        assert v.WhichOneof("kind") == "big_int"
        assert int.from_bytes(v.big_int, "big", signed=True) == n
        assert v.big_int == bridge_codec.encode(n).big_int
    assert _codec.decode(v) == n


def test_empty_containers_stay_containers_not_null() -> None:
    for empty in ([], (), set(), frozenset(), {}):
        v = pb.Value.FromString(_codec.encode(empty).SerializeToString())
        assert same(_codec.decode(v), empty), empty


def test_a_dict_keeps_its_order_and_any_hashable_key() -> None:
    value = {(1, "a"): 1, None: 2, b"k": 3, 4: {frozenset({1}): "x"}, "z": 5}
    assert same(_codec.decode(_codec.encode(value)), value)


def test_temporal_values_cross_as_iso_text() -> None:
    tz = dt.timezone(dt.timedelta(hours=5, minutes=30))
    v = _codec.encode(dt.datetime(2024, 2, 29, 12, 30, 1, 5, tzinfo=tz))
    assert (v.temporal.kind, v.temporal.text) == (pb.TEMPORAL_KIND_DATETIME, "2024-02-29T12:30:01.000005+05:30")
    assert _codec.encode(dt.timedelta(days=-1, microseconds=1)).temporal.text == str(-86_400_000_000 + 1)
    for value in (dt.date(1, 1, 1), dt.time(23, 59, 59, 999999), dt.timedelta(days=3, seconds=5)):
        assert same(_codec.decode(_codec.encode(value)), value)


def test_numpy_arrays_cross_as_little_endian_c_order() -> None:
    np = pytest.importorskip("numpy")
    big_endian = np.arange(6, dtype=">i4").reshape(2, 3)
    v = _codec.encode(big_endian)
    assert (v.ndarray.dtype, list(v.ndarray.shape)) == ("int32", [2, 3])
    assert v.ndarray.data == np.arange(6, dtype="<i4").tobytes()
    back = _codec.decode(v)
    assert back.dtype == np.int32 and back.shape == (2, 3) and back.flags.writeable
    assert (back == big_endian).all()
    fortran = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    assert (_codec.decode(_codec.encode(fortran)) == fortran).all()
    assert _codec.decode(_codec.encode(np.float32(1.5))) == 1.5
    with pytest.raises(sp.EncodingError, match="object"):
        _codec.encode(np.array([object()]))


def test_without_numpy_arrays_come_back_as_ndarray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_codec, "_numpy", lambda: None)
    v = pb.Value(ndarray=pb.NdArray(dtype="float64", shape=[2, 2], data=struct.pack("<4d", 0.0, 1.0, 2.5, -3.0)))
    arr = _codec.decode(v)
    assert isinstance(arr, sp.NdArray)
    assert (arr.dtype, arr.shape) == ("float64", (2, 2))
    assert arr.tolist() == [[0.0, 1.0], [2.5, -3.0]]
    assert repr(arr) == "NdArray(float64, shape=(2, 2), [[0.0, 1.0], [2.5, -3.0]])"
    assert repr(sp.NdArray("uint8", (100,), bytes(100))) == "NdArray(uint8, shape=(100,), 100 bytes)"
    # It goes back as it came.
    assert _codec.encode(arr) == v
    assert sp.NdArray("complex64", (1,), struct.pack("<2f", 1.0, 2.0)).tolist() == [1 + 2j]
    assert sp.NdArray("int8", (), b"\xff").tolist() == -1
    with pytest.raises(ValueError, match="needs 16 bytes"):
        sp.NdArray("int64", (2,), b"\x00")
    with pytest.raises(TypeError, match="install numpy"):
        sp.NdArray("datetime64[ns]", (1,), bytes(8)).tolist()


def test_refs_travel_as_themselves() -> None:
    ref = sp.Ref("w1/3", "s1", "pathlib.PosixPath", "PosixPath('/tmp')")
    stream = sp.StreamRef("w1/4", "s1", "generator")
    back = _codec.decode(_codec.encode([ref, stream]))
    assert back == [ref, stream]
    assert back[0].repr == "PosixPath('/tmp')"
    with pytest.raises(TypeError, match=r"session\.next"):
        back[1].next(1)


def test_nesting_is_refused_past_what_a_frame_can_carry() -> None:
    deepest_list: Any = 1
    for _ in range(48):
        deepest_list = [deepest_list]
    _codec.encode(deepest_list)
    with pytest.raises(sp.EncodingError, match="48 levels of lists, 32 of maps") as err:
        _codec.encode([deepest_list], name="x")
    assert err.value.kind == "encoding" and err.value.code is None
    deepest_map: Any = 1
    for _ in range(32):
        deepest_map = {"k": deepest_map}
    _codec.encode(deepest_map)
    with pytest.raises(sp.EncodingError):
        _codec.encode({"k": deepest_map})
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(sp.EncodingError, match="cyclic"):
        _codec.encode(cyclic)


def test_a_lone_surrogate_is_refused_saying_where() -> None:
    with pytest.raises(sp.EncodingError, match=r"lone surrogate .* at names\[1\]") as err:
        _codec.encode(["ok", "caf\udce9.txt"], name="names")
    assert err.value.parameter == "names"


def test_an_unsupported_type_is_refused_naming_it_and_where() -> None:
    with pytest.raises(sp.EncodingError, match=r"type builtins.object|type object") as err:
        _codec.encode({"a": [1, object()]}, name="arg")
    assert "at arg['a'][1]" in str(err.value)
    assert isinstance(err.value, sp.BadArgumentsError)


def test_subclasses_encode_as_their_base() -> None:
    class Name(str):
        pass

    from collections import OrderedDict

    assert _codec.decode(_codec.encode(OrderedDict([(Name("a"), True)]))) == {"a": True}


def test_a_map_key_that_is_a_map_is_refused_on_decode() -> None:
    v = pb.Value()
    entry = v.map.entries.add()
    entry.key.map.SetInParent()
    entry.value.int = 1
    with pytest.raises(sp.EncodingError, match="cannot be a map key"):
        _codec.decode(v)
