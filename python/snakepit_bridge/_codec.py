"""Python objects <-> ``snakepit.v1.Value``.

Encoding dispatches on the exact type first (one dict lookup), then falls back
to isinstance checks and caches the answer for that type. numpy is never
imported here: an object can only be a numpy object if numpy is already loaded.

The kinds the universal FFI gives meaning to (``ref``, ``stream_ref``,
``callback``) are decoded by functions it installs with :func:`set_decoder`
(unsupported until then), and the types it adds are encoded by encoders it
registers with :func:`register_encoder` (see ``_ffi.py``).
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import _numpy
from ._proto import snakepit_pb2 as pb

__all__ = [
    "DecodingError",
    "EncodingError",
    "NestingError",
    "SharedMemoryExhausted",
    "decode",
    "decode_into_kwargs",
    "decode_values",
    "encode",
    "encode_into",
    "safe_text",
]

MAX_DEPTH = 100
"""Deepest container nesting decoded."""

WIRE_DEPTH: int = pb.LIMIT_VALUE_WIRE_DEPTH
"""Protobuf message levels an encoded Value may nest (guards against cyclic containers).

Decoders refuse a message nested more than 100 levels below the frame (upb in
Python, prost on the host), and the deepest Value field sits at the fourth
level (``Frame.execute.kwargs[k]``, ``Frame.chunk.metadata[k]``), leaving 97
(``LIMIT_VALUE_WIRE_DEPTH`` in snakepit.proto, the number the host reads too).
A list, tuple or set costs two levels (``ValueList`` and the item's
``Value``), a map three (``ValueMap``, ``MapEntry``, ``Value``): so lists nest
at most 48 deep and maps 32. The ``depth`` the encoders pass along counts
these levels."""
LIST_COST = 2
MAP_COST = 3

_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1
_NULL = pb.NULL_VALUE
_LITTLE = sys.byteorder == "little"

_TK_DATETIME = pb.TEMPORAL_KIND_DATETIME
_TK_DATE = pb.TEMPORAL_KIND_DATE
_TK_TIME = pb.TEMPORAL_KIND_TIME
_TK_TIMEDELTA = pb.TEMPORAL_KIND_TIMEDELTA


class EncodingError(TypeError):
    """A value could not be converted to (or from) its wire form.

    ``path`` locates the culprit inside the top-level value, e.g. ``result['a'][2]``.
    """

    def __init__(self, message: str, *, python_type: str = "", path: str = "") -> None:
        super().__init__(message)
        self.reason = message
        self.python_type = python_type
        self.path = path
        self._parts: list[str] = []

    def __str__(self) -> str:
        return self.reason


class DecodingError(EncodingError):
    """A wire value could not be turned into a Python object."""


class NestingError(EncodingError):
    """Containers nested deeper than protobuf lets a frame carry (see
    :data:`WIRE_DEPTH`), or than Python's recursion limit allows, while
    encoding: most likely a cyclic value."""


class SharedMemoryExhausted(EncodingError):
    """The worker's shared-memory arena has no room for a value (see
    ``zero_copy``): the request fails with ERROR_KIND_SHARED_MEMORY_EXHAUSTED,
    whose details are ``requested``, ``capacity`` and ``in_use`` (bytes)."""

    def __init__(self, requested: int, capacity: int, in_use: int) -> None:
        super().__init__(
            f"shared memory exhausted: {requested} bytes requested, {in_use} of {capacity} bytes in use "
            "(max_shared_bytes)",
            python_type="SharedMemoryExhausted",
        )
        self.requested = requested
        self.capacity = capacity
        self.in_use = in_use


# Shared memory (``_shm.install`` sets these when the worker has arenas): an
# ndarray of at least _SHM_MIN bytes, or bytes that long, encoded while a
# frame builder collects references on this thread (`_SHM_TL.refs`), goes to
# the worker's arena; regions of the host's arena decode through it.
_SHM_MIN = sys.maxsize


class _ShmThreadState(threading.local):
    refs: list[int] | None = None
    last: list[int] | None = None
    decoded: list[int] | None = None


SHM_THREAD = _ShmThreadState()
"""Per thread: the references of the frame being built (``refs``), of the
last frame built (``last``), the host regions decoding took care of (``decoded``)."""
_SHM_TL = SHM_THREAD
_shm_encode_array: Callable[[Any, Any, Any, list[int]], None] | None = None
_shm_encode_bytes: Callable[[Any, int, Any, list[int]], None] | None = None
_shm_decode_array: Callable[[Any, Any, tuple[int, ...], int], Any] | None = None
_shm_decode_bytes: Callable[[Any], bytes] | None = None


def enable_shared_memory(
    threshold: int,
    encode_array: Callable[[Any, Any, Any, list[int]], None],
    encode_bytes: Callable[[Any, int, Any, list[int]], None],
    decode_array: Callable[[Any, Any, tuple[int, ...], int], Any],
    decode_bytes: Callable[[Any], bytes],
) -> None:
    """Turns shared memory on (``_shm.install``): ndarrays and bytes of at
    least `threshold` bytes go through the given functions."""
    global _SHM_MIN, _shm_encode_array, _shm_encode_bytes, _shm_decode_array, _shm_decode_bytes
    _shm_encode_array = encode_array
    _shm_encode_bytes = encode_bytes
    _shm_decode_array = decode_array
    _shm_decode_bytes = decode_bytes
    _SHM_MIN = threshold


OnUnserializable = Callable[[Any, pb.Value], None]
"""Hook: fill the given Value for an object the codec cannot encode, or raise."""


def _raise_unserializable(obj: Any, out: pb.Value) -> None:
    t = type(obj)
    name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    raise EncodingError(f"cannot encode object of type {name}", python_type=name)


# ------------------------------------------------------------------ encoding


def _enc_none(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    out.null = _NULL


def _enc_bool(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    out.bool = bool(obj)


def _enc_int(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    obj = int(obj)
    if _INT_MIN <= obj <= _INT_MAX:
        out.int = obj
    else:
        out.big_int = obj.to_bytes(((obj if obj >= 0 else ~obj).bit_length() + 8) // 8, "big", signed=True)


def _enc_float(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    out.float = obj


def _enc_str(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    try:
        out.str = obj
    except UnicodeEncodeError as e:
        raise surrogate_error(obj, e) from None


def surrogate_error(text: str, e: UnicodeEncodeError) -> EncodingError:
    """The EncodingError of a str value that is not valid UTF-8 (a lone
    surrogate, as ``os.listdir`` gives for a file name that is not UTF-8)."""
    bad = text[e.start : e.start + 1]
    return EncodingError(
        f"str with a lone surrogate ({bad!r} at index {e.start}) is not valid UTF-8 and cannot cross; "
        "return bytes instead (os.fsencode(name) for a file name)",
        python_type="str",
    )


def safe_text(text: str) -> str:
    """``text`` as diagnostic text can cross: a lone surrogate (not valid
    UTF-8) becomes its backslash escape, so an error message, a traceback or a
    telemetry name always reaches the host."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _enc_bytes(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    if len(obj) >= _SHM_MIN and (refs := _SHM_TL.refs) is not None:
        _shm_encode_bytes(obj, len(obj), out, refs)  # type: ignore[misc]
        return
    out.bytes = bytes(obj)


def _enc_memoryview(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    if obj.nbytes >= _SHM_MIN and (refs := _SHM_TL.refs) is not None:
        _shm_encode_bytes(obj, obj.nbytes, out, refs)  # type: ignore[misc]
        return
    out.bytes = bytes(obj)


def _enc_complex(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    c = out.complex
    c.real = obj.real
    c.imag = obj.imag


_TOO_DEEP = (
    f"containers nested deeper than a frame can carry ({WIRE_DEPTH // LIST_COST} levels of lists, "
    f"{WIRE_DEPTH // MAP_COST} of maps; is the value cyclic?)"
)


def _enc_items(items: Any, lst: Any, depth: int, hook: OnUnserializable, index_path: bool) -> None:
    if depth + LIST_COST > WIRE_DEPTH:
        raise NestingError(_TOO_DEEP)
    if not items:
        # An empty container still has to be present, or it reads as null.
        lst.SetInParent()
        return
    add = lst.items.add
    depth += LIST_COST
    i = 0
    try:
        for i, item in enumerate(items):  # noqa: B007
            child = add()
            f = _ENCODERS.get(type(item))
            if f is None:
                _enc_slow(item, child, depth, hook)
            else:
                f(item, child, depth, hook)
    except EncodingError as e:
        e._parts.append(f"[{i}]" if index_path else "{...}")
        raise


def _enc_list(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    _enc_items(obj, out.list, depth, hook, True)


def _enc_tuple(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    _enc_items(obj, out.tuple, depth, hook, True)


def _enc_set(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    _enc_items(obj, out.set, depth, hook, False)


def _enc_frozenset(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    _enc_items(obj, out.frozenset, depth, hook, False)


def _enc_map(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    if depth + MAP_COST > WIRE_DEPTH:
        raise NestingError(_TOO_DEEP)
    if not obj:
        out.map.SetInParent()
        return
    add = out.map.entries.add
    depth += MAP_COST
    key: Any = None
    in_key = False
    try:
        for key, value in obj.items():
            entry = add()
            in_key = True
            enc_value(key, entry.key, depth, hook)
            in_key = False
            enc_value(value, entry.value, depth, hook)
    except EncodingError as e:
        e._parts.append(f"<key {key!r}>" if in_key else f"[{key!r}]")
        raise


def _iso_encoder(kind: pb.TemporalKind) -> Callable[[Any, pb.Value, int, OnUnserializable], None]:
    """Encoder for a datetime type that crosses as ISO 8601 text."""

    def encode(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
        t = out.temporal
        t.kind = kind
        t.text = obj.isoformat()

    return encode


_enc_datetime = _iso_encoder(_TK_DATETIME)
_enc_date = _iso_encoder(_TK_DATE)
_enc_time = _iso_encoder(_TK_TIME)


def _enc_timedelta(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    t = out.temporal
    t.kind = _TK_TIMEDELTA
    t.text = str((obj.days * 86_400 + obj.seconds) * 1_000_000 + obj.microseconds)


def _enc_ndarray(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    np = sys.modules["numpy"]
    dtype = obj.dtype
    if dtype.hasobject or dtype.fields is not None:
        if hook is not _raise_unserializable:
            # No wire form: whoever supplied a hook decides (the FFI makes a ref).
            hook(obj, out)
            return
        raise EncodingError(
            f"cannot encode numpy array of dtype {dtype} (object and structured dtypes have no wire form)",
            python_type="numpy.ndarray",
        )
    if obj.nbytes >= _SHM_MIN and (refs := _SHM_TL.refs) is not None:
        _shm_encode_array(obj, dtype, out.ndarray, refs)  # type: ignore[misc]
        return
    arr = np.ascontiguousarray(obj)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not _LITTLE):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    nd = out.ndarray
    nd.dtype = dtype.name
    # obj's shape: ascontiguousarray makes a 0-d array 1-d.
    nd.shape.extend(obj.shape)
    nd.data = arr.tobytes()


def _enc_torch(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    """A torch tensor on the CPU crosses as the ndarray it shares memory with."""
    if obj.device.type != "cpu" or "numpy" not in sys.modules:
        hook(obj, out)
        return
    _enc_ndarray(obj.detach().resolve_conj().resolve_neg().numpy(), out, depth, hook)


def _enc_numpy_scalar(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    enc_value(obj.item(), out, depth, hook)


_ENCODERS: dict[type, Callable[[Any, pb.Value, int, OnUnserializable], None]] = {
    type(None): _enc_none,
    bool: _enc_bool,
    int: _enc_int,
    float: _enc_float,
    str: _enc_str,
    bytes: _enc_bytes,
    bytearray: _enc_bytes,
    memoryview: _enc_memoryview,
    list: _enc_list,
    tuple: _enc_tuple,
    set: _enc_set,
    frozenset: _enc_frozenset,
    dict: _enc_map,
    complex: _enc_complex,
    _dt.datetime: _enc_datetime,
    _dt.date: _enc_date,
    _dt.time: _enc_time,
    _dt.timedelta: _enc_timedelta,
}

# isinstance fallbacks, most specific first (bool before int, datetime before date).
_FALLBACKS: tuple[tuple[type | tuple[type, ...], Callable[[Any, pb.Value, int, OnUnserializable], None]], ...] = (
    (bool, _enc_bool),
    (int, _enc_int),
    (float, _enc_float),
    (str, _enc_str),
    (memoryview, _enc_memoryview),
    ((bytes, bytearray), _enc_bytes),
    (Mapping, _enc_map),
    (list, _enc_list),
    (tuple, _enc_tuple),
    (frozenset, _enc_frozenset),
    (set, _enc_set),
    (complex, _enc_complex),
    (_dt.datetime, _enc_datetime),
    (_dt.date, _enc_date),
    (_dt.time, _enc_time),
    (_dt.timedelta, _enc_timedelta),
)


def _enc_slow(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    t = type(obj)
    np = sys.modules.get("numpy")
    f: Callable[[Any, pb.Value, int, OnUnserializable], None] | None = None
    if np is not None:
        if isinstance(obj, np.ndarray):
            f = _enc_ndarray
        elif isinstance(obj, np.generic):
            f = _enc_numpy_scalar
    if f is None and (torch := sys.modules.get("torch")) is not None and isinstance(obj, torch.Tensor):
        f = _enc_torch
    if f is None:
        for base, enc in _FALLBACKS:
            if isinstance(obj, base):
                f = enc
                break
    if f is None:
        hook(obj, out)
        return
    _ENCODERS[t] = f
    f(obj, out, depth, hook)


def enc_value(obj: Any, out: pb.Value, depth: int, hook: OnUnserializable) -> None:
    f = _ENCODERS.get(type(obj))
    if f is None:
        _enc_slow(obj, out, depth, hook)
    else:
        f(obj, out, depth, hook)


def finish_error(e: EncodingError, root: str) -> None:
    """Complete ``e`` raised while encoding the value named ``root``: its
    ``path`` from the parts gathered on the way up, and the path in its message."""
    e.path = root + "".join(reversed(e._parts))
    shown = e.path if len(e.path) <= 200 else e.path[:200] + "..."
    e.reason = f"{e.reason} at {shown}"
    e.args = (e.reason,)


def encode_into(
    obj: Any,
    out: pb.Value,
    *,
    root: str = "value",
    on_unserializable: OnUnserializable | None = None,
) -> None:
    """Fill ``out`` (an empty Value) with the wire form of ``obj``."""
    hook = on_unserializable or _raise_unserializable
    try:
        f = _ENCODERS.get(type(obj))
        if f is None:
            _enc_slow(obj, out, 0, hook)
        else:
            f(obj, out, 0, hook)
    except EncodingError as e:
        finish_error(e, root)
        raise
    except RecursionError:
        raise NestingError(f"value nested too deeply to encode at {root}", path=root) from None


def encode(
    obj: Any,
    *,
    root: str = "value",
    on_unserializable: OnUnserializable | None = None,
) -> pb.Value:
    """Return the wire form of ``obj``; raise :class:`EncodingError` if it has none.

    ``on_unserializable(obj, value)`` is called for objects without a wire form;
    it may fill ``value`` (for example with an object reference) or raise.
    ``root`` names the value in error paths.
    """
    out = pb.Value()
    encode_into(obj, out, root=root, on_unserializable=on_unserializable)
    return out


# ------------------------------------------------------------------ decoding


def _hashable(obj: Any) -> Any:
    """Make a decoded value usable as a dict key or set element."""
    t = type(obj)
    if t is list or t is tuple:
        return tuple(_hashable(x) for x in obj)
    if t is set:
        return frozenset(obj)
    if t is dict:
        raise DecodingError("a map cannot be used as a map key or set element")
    return obj


def _dec_list(v: pb.Value, depth: int) -> Any:
    return [dec(x, depth) for x in v.list.items]


def _dec_tuple(v: pb.Value, depth: int) -> Any:
    return tuple([dec(x, depth) for x in v.tuple.items])


def _dec_set(v: pb.Value, depth: int) -> Any:
    return {_hashable(dec(x, depth)) for x in v.set.items}


def _dec_frozenset(v: pb.Value, depth: int) -> Any:
    return frozenset(_hashable(dec(x, depth)) for x in v.frozenset.items)


def _dec_map(v: pb.Value, depth: int) -> Any:
    out: dict[Any, Any] = {}
    for e in v.map.entries:
        k = dec(e.key, depth)
        if type(k) is not str:
            k = _hashable(k)
        out[k] = dec(e.value, depth)
    return out


def _dec_big_int(v: pb.Value, depth: int) -> Any:
    return int.from_bytes(v.big_int, "big", signed=True)


def _dec_complex(v: pb.Value, depth: int) -> Any:
    c = v.complex
    return complex(c.real, c.imag)


def _dec_temporal(v: pb.Value, depth: int) -> Any:
    t = v.temporal
    try:
        if t.kind == _TK_DATETIME:
            return _dt.datetime.fromisoformat(t.text)
        if t.kind == _TK_DATE:
            return _dt.date.fromisoformat(t.text)
        if t.kind == _TK_TIME:
            return _dt.time.fromisoformat(t.text)
        if t.kind == _TK_TIMEDELTA:
            return _dt.timedelta(microseconds=int(t.text))
    except (ValueError, OverflowError) as e:
        raise DecodingError(f"invalid temporal value {t.text!r}: {e}") from None
    raise DecodingError(f"unknown temporal kind {t.kind}")


def _dec_ndarray(v: pb.Value, depth: int) -> Any:
    try:
        np = _numpy.load("an ndarray value")
    except ModuleNotFoundError as e:
        raise DecodingError(str(e)) from None
    nd = v.ndarray
    try:
        dtype = np.dtype(nd.dtype)
    except TypeError:
        raise DecodingError(f"unknown ndarray dtype {nd.dtype!r}") from None
    if dtype.hasobject:
        raise DecodingError(f"ndarray dtype {nd.dtype!r} cannot cross the boundary")
    shape = tuple(nd.shape)
    n = math.prod(shape)
    data = nd.data
    if not data and nd.HasField("shared"):
        if _shm_decode_array is None:
            raise DecodingError("received an ndarray in shared memory, but this worker has no shared memory")
        return _shm_decode_array(nd, dtype, shape, n)
    if len(data) != n * dtype.itemsize:
        raise DecodingError(
            f"ndarray data has {len(data)} bytes, dtype {nd.dtype} with shape {shape} needs {n * dtype.itemsize}"
        )
    if _LITTLE or dtype.itemsize == 1:
        return np.frombuffer(bytearray(data), dtype=dtype).reshape(shape)
    return np.frombuffer(data, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)


def _dec_shared_bytes(v: pb.Value, depth: int) -> Any:
    if _shm_decode_bytes is None:
        raise DecodingError("received bytes in shared memory, but this worker has no shared memory")
    return _shm_decode_bytes(v)


def _dec_unsupported(v: pb.Value, depth: int) -> Any:
    raise DecodingError(f"values of kind {v.WhichOneof('kind')!r} are not supported by this bridge version yet")


_DECODERS: dict[str | None, Callable[[pb.Value, int], Any]] = {
    "null": lambda v, d: None,
    None: lambda v, d: None,
    "bool": lambda v, d: v.bool,
    "int": lambda v, d: v.int,
    "big_int": _dec_big_int,
    "float": lambda v, d: v.float,
    "str": lambda v, d: v.str,
    "bytes": lambda v, d: v.bytes,
    "list": _dec_list,
    "tuple": _dec_tuple,
    "set": _dec_set,
    "frozenset": _dec_frozenset,
    "map": _dec_map,
    "ndarray": _dec_ndarray,
    "temporal": _dec_temporal,
    "complex": _dec_complex,
    "shared_bytes": _dec_shared_bytes,
    "ref": _dec_unsupported,
    "stream_ref": _dec_unsupported,
    "callback": _dec_unsupported,
}

_CONTAINERS = frozenset({"list", "tuple", "set", "frozenset", "map"})


def register_encoder(t: type, encoder: Callable[[Any, pb.Value, int, OnUnserializable], None]) -> None:
    """Encode objects of exactly type ``t`` with ``encoder(obj, out, depth, hook)``."""
    _ENCODERS[t] = encoder


def set_decoder(kind: str, decoder: Callable[[pb.Value, int], Any]) -> None:
    """Decode values of ``kind`` (``"ref"``, ``"stream_ref"``, ``"callback"``) with ``decoder(value, depth)``."""
    if kind not in ("ref", "stream_ref", "callback"):
        raise ValueError(f"the decoder of {kind!r} values is built in")
    _DECODERS[kind] = decoder


def dec(v: pb.Value, depth: int) -> Any:
    kind = v.WhichOneof("kind")
    if kind in _CONTAINERS:
        if depth >= MAX_DEPTH:
            raise DecodingError(f"containers nested deeper than {MAX_DEPTH} levels")
        return _DECODERS[kind](v, depth + 1)
    return _DECODERS[kind](v, depth)


def decode(value: pb.Value) -> Any:
    """Return the Python object for a wire Value."""
    return dec(value, 0)


def decode_values(values: Iterable[pb.Value]) -> list[Any]:
    """Decode a sequence of Values (positional arguments) into a list.

    Strings and ints, the common arguments, are read inline: each call of
    ``dec`` costs about as much as reading the value itself."""
    return [
        v.str if (k := v.WhichOneof("kind")) == "str" else v.int if k == "int" else dec(v, 0) for v in values
    ]


def decode_into_kwargs(kwargs: Mapping[str, pb.Value]) -> dict[str, Any]:
    """Decode a ``map<string, Value>`` into a plain dict."""
    return {k: dec(v, 0) for k, v in kwargs.items()}
