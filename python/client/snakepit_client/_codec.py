"""Python objects <-> ``snakepit.v1.Value``, the client's side.

The same semantics as the worker's codec (``snakepit_bridge._codec``), written
for a client that may have no numpy: ints stay ints (beyond 64 bits as
big-endian two's complement ``big_int``), bytes stay bytes, tuples, sets and
frozensets keep their type, a dict keeps its order and may have any hashable
keys, ``complex`` and ``datetime``/``date``/``time``/``timedelta`` cross
(ISO 8601 text; a timedelta as its microseconds), arrays as dtype, shape and
little-endian C-order bytes. Results with arrays give numpy arrays when numpy
can be imported, else :class:`~snakepit_client.NdArray`. :class:`Ref` and
:class:`StreamRef` travel as themselves.

Nesting is bounded by ``LIMIT_VALUE_WIRE_DEPTH`` (snakepit.proto): the worker
protocol cannot carry a value deeper than 48 levels of lists or 32 of maps,
so the client refuses one before sending it.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ._errors import EncodingError
from ._proto import snakepit_pb2 as pb
from ._types import NdArray, Ref, StreamRef

__all__ = ["Binder", "decode", "encode", "encode_into", "unbound"]

WIRE_DEPTH: int = pb.LIMIT_VALUE_WIRE_DEPTH
"""Protobuf message levels a Value may nest (see snakepit.proto)."""
LIST_COST = 2
"""Levels a list, tuple or set costs: ValueList and the item's Value."""
MAP_COST = 3
"""Levels a map costs: ValueMap, MapEntry and the Value."""

_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1
_TOO_DEEP = (
    f"containers nested deeper than snakepit can carry ({WIRE_DEPTH // LIST_COST} levels of lists, "
    f"{WIRE_DEPTH // MAP_COST} of maps; is the value cyclic?)"
)

Encoder = Callable[[Any, pb.Value, int], None]


class _Failure(Exception):
    """An encoding failure on its way up, collecting where it happened."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []


# ------------------------------------------------------------------ encoding


def _enc_none(obj: Any, out: pb.Value, depth: int) -> None:
    out.null = pb.NULL_VALUE


def _enc_bool(obj: Any, out: pb.Value, depth: int) -> None:
    out.bool = bool(obj)


def _enc_int(obj: Any, out: pb.Value, depth: int) -> None:
    obj = int(obj)
    if _INT_MIN <= obj <= _INT_MAX:
        out.int = obj
    else:
        # Enough bytes for the magnitude and the sign bit.
        length = ((obj if obj >= 0 else ~obj).bit_length() + 8) // 8
        out.big_int = obj.to_bytes(length, "big", signed=True)


def _enc_float(obj: Any, out: pb.Value, depth: int) -> None:
    out.float = float(obj)


def _enc_str(obj: Any, out: pb.Value, depth: int) -> None:
    try:
        out.str = obj
    except UnicodeEncodeError as e:
        raise _Failure(
            f"str with a lone surrogate ({obj[e.start : e.start + 1]!r} at index {e.start}) is not "
            "valid UTF-8 and cannot be sent; send bytes instead (os.fsencode(name) for a file name)"
        ) from None


def _enc_bytes(obj: Any, out: pb.Value, depth: int) -> None:
    out.bytes = bytes(obj)


def _enc_complex(obj: Any, out: pb.Value, depth: int) -> None:
    out.complex.real = obj.real
    out.complex.imag = obj.imag


def _enc_items(items: Any, target: pb.ValueList, depth: int, indexed: bool) -> None:
    if depth + LIST_COST > WIRE_DEPTH:
        raise _Failure(_TOO_DEEP)
    target.SetInParent()  # an empty container must still be present, or it reads as null
    depth += LIST_COST
    for i, item in enumerate(items):
        try:
            _encode(item, target.items.add(), depth)
        except _Failure as e:
            e.path.append(f"[{i}]" if indexed else "{...}")
            raise


def _enc_list(obj: Any, out: pb.Value, depth: int) -> None:
    _enc_items(obj, out.list, depth, True)


def _enc_tuple(obj: Any, out: pb.Value, depth: int) -> None:
    _enc_items(obj, out.tuple, depth, True)


def _enc_set(obj: Any, out: pb.Value, depth: int) -> None:
    _enc_items(obj, out.set, depth, False)


def _enc_frozenset(obj: Any, out: pb.Value, depth: int) -> None:
    _enc_items(obj, out.frozenset, depth, False)


def _enc_map(obj: Any, out: pb.Value, depth: int) -> None:
    if depth + MAP_COST > WIRE_DEPTH:
        raise _Failure(_TOO_DEEP)
    out.map.SetInParent()
    depth += MAP_COST
    for key, value in obj.items():
        entry = out.map.entries.add()
        try:
            _encode(key, entry.key, depth)
        except _Failure as e:
            e.path.append(f"<key {key!r}>")
            raise
        try:
            _encode(value, entry.value, depth)
        except _Failure as e:
            e.path.append(f"[{key!r}]")
            raise


def _temporal(kind: pb.TemporalKind) -> Encoder:
    def encode(obj: Any, out: pb.Value, depth: int) -> None:
        out.temporal.kind = kind
        out.temporal.text = obj.isoformat()

    return encode


def _enc_timedelta(obj: Any, out: pb.Value, depth: int) -> None:
    out.temporal.kind = pb.TEMPORAL_KIND_TIMEDELTA
    out.temporal.text = str((obj.days * 86_400 + obj.seconds) * 1_000_000 + obj.microseconds)


def _enc_ndarray_type(obj: NdArray, out: pb.Value, depth: int) -> None:
    nd = out.ndarray
    nd.dtype = obj.dtype
    nd.shape.extend(obj.shape)
    nd.data = obj.data


def _enc_numpy_array(obj: Any, out: pb.Value, depth: int) -> None:
    np = sys.modules["numpy"]
    if obj.dtype.hasobject or obj.dtype.fields is not None:
        raise _Failure(f"numpy arrays of dtype {obj.dtype} (object or structured) cannot be sent")
    arr = np.ascontiguousarray(obj)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and sys.byteorder != "little"):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    nd = out.ndarray
    nd.dtype = obj.dtype.name
    nd.shape.extend(arr.shape)
    nd.data = arr.tobytes()


def _enc_numpy_scalar(obj: Any, out: pb.Value, depth: int) -> None:
    _encode(obj.item(), out, depth)


def _enc_ref(obj: Ref, out: pb.Value, depth: int) -> None:
    r = out.ref
    r.id = obj.id
    r.session_id = obj.session_id
    r.type_name = obj.type_name
    r.repr = obj.repr


def _enc_stream_ref(obj: StreamRef, out: pb.Value, depth: int) -> None:
    r = out.stream_ref
    r.id = obj.id
    r.session_id = obj.session_id
    r.type_name = obj.type_name


_ENCODERS: dict[type, Encoder] = {
    type(None): _enc_none,
    bool: _enc_bool,
    int: _enc_int,
    float: _enc_float,
    str: _enc_str,
    bytes: _enc_bytes,
    bytearray: _enc_bytes,
    memoryview: _enc_bytes,
    list: _enc_list,
    tuple: _enc_tuple,
    set: _enc_set,
    frozenset: _enc_frozenset,
    dict: _enc_map,
    complex: _enc_complex,
    dt.datetime: _temporal(pb.TEMPORAL_KIND_DATETIME),
    dt.date: _temporal(pb.TEMPORAL_KIND_DATE),
    dt.time: _temporal(pb.TEMPORAL_KIND_TIME),
    dt.timedelta: _enc_timedelta,
    NdArray: _enc_ndarray_type,
    Ref: _enc_ref,
    StreamRef: _enc_stream_ref,
}

# Subclasses, most specific first (bool before int, datetime before date).
_BY_BASE: tuple[tuple[type | tuple[type, ...], Encoder], ...] = (
    (bool, _enc_bool),
    (int, _enc_int),
    (float, _enc_float),
    (str, _enc_str),
    ((bytes, bytearray, memoryview), _enc_bytes),
    (Mapping, _enc_map),
    (list, _enc_list),
    (tuple, _enc_tuple),
    (frozenset, _enc_frozenset),
    (set, _enc_set),
    (complex, _enc_complex),
    (dt.datetime, _ENCODERS[dt.datetime]),
    (dt.date, _ENCODERS[dt.date]),
    (dt.time, _ENCODERS[dt.time]),
    (dt.timedelta, _enc_timedelta),
)


def _find_encoder(obj: Any) -> Encoder:
    """The encoder of a type not in the table (remembered once found)."""
    candidates = _BY_BASE
    np = sys.modules.get("numpy")  # an object can only be numpy's if numpy is loaded
    if np is not None:
        candidates = ((np.ndarray, _enc_numpy_array), (np.generic, _enc_numpy_scalar), *candidates)
    for base, encoder in candidates:
        if isinstance(obj, base):
            _ENCODERS[type(obj)] = encoder
            return encoder
    t = type(obj)
    name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    raise _Failure(f"cannot send an object of type {name}")


def _encode(obj: Any, out: pb.Value, depth: int) -> None:
    encoder = _ENCODERS.get(type(obj)) or _find_encoder(obj)
    encoder(obj, out, depth)


def encode_into(obj: Any, out: pb.Value, *, name: str = "value") -> None:
    """Fill ``out`` (an empty Value) with the wire form of ``obj``.

    Raises :class:`EncodingError` (kind ``encoding``) saying what could not be
    sent and where, e.g. ``at kwargs['x'][2]`` (``name`` is the root's name).
    """
    try:
        _encode(obj, out, 0)
    except _Failure as e:
        where = name + "".join(reversed(e.path))
        raise EncodingError(f"{e.message} at {where}", kind="encoding", parameter=name) from None
    except RecursionError:
        raise EncodingError(f"{_TOO_DEEP} at {name}", kind="encoding", parameter=name) from None


def encode(obj: Any, *, name: str = "value") -> pb.Value:
    """The wire form of ``obj`` (see :func:`encode_into`)."""
    out = pb.Value()
    encode_into(obj, out, name=name)
    return out


# ------------------------------------------------------------------ decoding

@functools.cache
def _numpy() -> Any:
    """numpy, when it can be imported (tried once), else ``None``."""
    try:
        return importlib.import_module("numpy")
    except ImportError:
        return None


Binder = Callable[[StreamRef], StreamRef]
"""Gives a decoded StreamRef the session that iterates it."""


def unbound(stream: StreamRef) -> StreamRef:
    """The binder that leaves a StreamRef bound to no session."""
    return stream


def _failed(message: str) -> EncodingError:
    return EncodingError(f"cannot decode the server's value: {message}", kind="encoding")


def _hashable(obj: Any) -> Any:
    """A decoded value usable as a dict key or set element (the server's
    lists inside keys were Python tuples; its sets, frozensets)."""
    if type(obj) is list:
        return tuple(_hashable(x) for x in obj)
    if type(obj) is set:
        return frozenset(obj)
    if type(obj) is dict:
        raise _failed("a map cannot be a map key or a set element")
    return obj


def _dec_temporal(t: pb.Temporal) -> Any:
    try:
        if t.kind == pb.TEMPORAL_KIND_DATETIME:
            return dt.datetime.fromisoformat(t.text)
        if t.kind == pb.TEMPORAL_KIND_DATE:
            return dt.date.fromisoformat(t.text)
        if t.kind == pb.TEMPORAL_KIND_TIME:
            return dt.time.fromisoformat(t.text)
        if t.kind == pb.TEMPORAL_KIND_TIMEDELTA:
            return dt.timedelta(microseconds=int(t.text))
    except (ValueError, OverflowError) as e:
        raise _failed(f"invalid temporal value {t.text!r}: {e}") from None
    raise _failed(f"unknown temporal kind {t.kind}")


def _dec_ndarray(nd: pb.NdArray) -> Any:
    shape = tuple(nd.shape)
    np = _numpy()
    if np is None:
        try:
            return NdArray(nd.dtype, shape, nd.data)
        except ValueError as e:
            raise _failed(str(e)) from None
    try:
        dtype = np.dtype(nd.dtype)
    except TypeError:
        raise _failed(f"unknown ndarray dtype {nd.dtype!r}") from None
    if dtype.hasobject or len(nd.data) != math.prod(shape) * dtype.itemsize:
        raise _failed(f"ndarray of dtype {nd.dtype} and shape {shape} with {len(nd.data)} bytes")
    little = dtype.newbyteorder("<")
    # A copy the caller owns (writable), in native byte order.
    return np.frombuffer(nd.data, dtype=little).astype(dtype).reshape(shape)


def _decode(v: pb.Value, bind: Binder) -> Any:
    kind = v.WhichOneof("kind")
    if kind == "str":
        return v.str
    if kind == "int":
        return v.int
    if kind == "float":
        return v.float
    if kind == "bool":
        return v.bool
    if kind == "null" or kind is None:
        return None
    if kind == "bytes":
        return v.bytes
    if kind == "list":
        return [_decode(x, bind) for x in v.list.items]
    if kind == "tuple":
        return tuple([_decode(x, bind) for x in v.tuple.items])
    if kind == "map":
        out: dict[Any, Any] = {}
        for e in v.map.entries:
            out[_hashable(_decode(e.key, bind))] = _decode(e.value, bind)
        return out
    if kind == "set":
        return {_hashable(_decode(x, bind)) for x in v.set.items}
    if kind == "frozenset":
        return frozenset(_hashable(_decode(x, bind)) for x in v.frozenset.items)
    if kind == "big_int":
        return int.from_bytes(v.big_int, "big", signed=True)
    if kind == "ndarray":
        return _dec_ndarray(v.ndarray)
    if kind == "temporal":
        return _dec_temporal(v.temporal)
    if kind == "complex":
        return complex(v.complex.real, v.complex.imag)
    if kind == "ref":
        r = v.ref
        return Ref(r.id, r.session_id, r.type_name, r.repr)
    if kind == "stream_ref":
        s = v.stream_ref
        return bind(StreamRef(s.id, s.session_id, s.type_name))
    raise _failed(f"values of kind {kind!r} cannot be used by a client")


def decode(value: pb.Value, *, bind: Binder = unbound) -> Any:
    """The Python object for a wire Value; ``bind`` attaches each StreamRef
    to the session that can iterate it."""
    return _decode(value, bind)
