"""Property tests of the codec: whatever Python value it is given, encoding
either gives a Value that decodes back to an equal value or raises an
EncodingError, never anything else (no RecursionError, no UnicodeEncodeError).

Bounded (derandomized, a few hundred examples each) so the suite stays fast.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snakepit_bridge import _frames
from snakepit_bridge._codec import (
    LIST_COST,
    MAP_COST,
    WIRE_DEPTH,
    EncodingError,
    NestingError,
    decode,
    encode,
)
from snakepit_bridge._proto import snakepit_pb2 as pb

FUZZ = settings(max_examples=600, derandomize=True, deadline=None, database=None)

# Text with lone surrogates mixed in now and then (st.text() leaves them out).
_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
texts = st.one_of(st.text(max_size=12), st.lists(st.one_of(st.characters(), _surrogates), max_size=8).map("".join))
floats = st.floats(allow_nan=True, allow_infinity=True)
ints = st.one_of(st.integers(), st.integers(min_value=-(2**200), max_value=2**200))
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts, st.binary(max_size=16))
# Set elements compare by == (no NaN, which is never equal to itself).
set_items = st.one_of(st.integers(), st.text(max_size=6), st.binary(max_size=6))
keys = st.one_of(st.text(max_size=6), texts, st.integers(), floats, st.booleans(), st.none(), st.binary(max_size=4))


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.dictionaries(keys, children, max_size=5),
        st.sets(set_items, max_size=5),
        st.frozensets(set_items, max_size=5),
    )


values = st.recursive(scalars, _extend, max_leaves=30)


def same(a: Any, b: Any) -> bool:
    """Equality that holds NaN equal to NaN and tells types apart (1 from True, 1.0 from 1)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (math.isnan(a) and math.isnan(b)) or a == b
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        # Entries keep their order across the wire, so NaN keys pair up too.
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items())
        )
    return a == b


def has_surrogate(value: Any) -> bool:
    if type(value) is str:
        return any(0xD800 <= ord(ch) <= 0xDFFF for ch in value)
    if type(value) is dict:
        return any(has_surrogate(k) or has_surrogate(v) for k, v in value.items())
    if type(value) in (list, tuple, set, frozenset):
        return any(has_surrogate(x) for x in value)
    return False


@FUZZ
@given(values)
def test_encode_round_trips_or_raises_encoding_error(value: Any) -> None:
    try:
        wire = encode(value)
    except EncodingError as e:
        # The only values here without a wire form: str that is not UTF-8.
        assert has_surrogate(value), f"{type(e).__name__}: {e}"
        assert "lone surrogate" in str(e) and e.path.startswith("value")
        return
    assert not has_surrogate(value)
    # Through the bytes, as it crosses the socket.
    back = decode(pb.Value.FromString(wire.SerializeToString()))
    assert same(back, value), (value, back)


@FUZZ
@given(texts)
def test_str_with_lone_surrogates_is_an_encoding_error(text: str) -> None:
    for value, path in ((text, "value"), ([1, text], "value[1]"), ({"k": text}, "value['k']")):
        if has_surrogate(text):
            with pytest.raises(EncodingError) as info:
                encode(value)
            assert info.value.path == path and info.value.python_type == "str"
        else:
            assert same(decode(encode(value)), value)


def _nest(depth: int, kinds: list[str]) -> Any:
    value: Any = 1
    for i in range(depth):
        kind = kinds[i % len(kinds)]
        value = [value] if kind == "list" else (value,) if kind == "tuple" else {"k": value}
    return value


def _cost(depth: int, kinds: list[str]) -> int:
    return sum(MAP_COST if kinds[i % len(kinds)] == "map" else LIST_COST for i in range(depth))


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(
    st.integers(min_value=1, max_value=120),
    st.lists(st.sampled_from(["list", "tuple", "map"]), min_size=1, max_size=4),
)
def test_nesting_past_the_wire_limit_is_a_nesting_error(depth: int, kinds: list[str]) -> None:
    value = _nest(depth, kinds)
    if _cost(depth, kinds) > WIRE_DEPTH:
        with pytest.raises(NestingError):
            encode(value)
        return
    wire = encode(value)
    # What encodes fits a frame at the deepest place a Value sits.
    frame = _frames.execute(1, "t", kwargs={"v": wire})
    back = pb.Frame.FromString(frame.SerializeToString())
    assert same(decode(back.execute.kwargs["v"]), value)


def test_limits_are_the_protocol_constant() -> None:
    assert WIRE_DEPTH == pb.LIMIT_VALUE_WIRE_DEPTH == 97
    assert WIRE_DEPTH // LIST_COST == 48 and WIRE_DEPTH // MAP_COST == 32
    encode(_nest(48, ["list"]))
    with pytest.raises(NestingError):
        encode(_nest(49, ["list"]))
    encode(_nest(32, ["map"]))
    with pytest.raises(NestingError):
        encode(_nest(33, ["map"]))


def test_very_deep_and_cyclic_values_never_raise_recursion_error() -> None:
    for value in (_nest(100_000, ["list"]), _nest(5_000, ["map", "tuple"])):
        with pytest.raises(NestingError):
            encode(value)
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(NestingError):
        encode(cyclic)
