"""What happens to a value that has no wire form.

A tool's result or stream item crosses as a typed ``Value`` (see ``_codec``).
When part of it has no wire form, the worker's ``--unserializable`` mode
decides:

* ``marker`` (default): the object is converted by the first of its methods
  ``model_dump()``, ``to_dict()``, ``_asdict()``, ``tolist()`` (size-guarded,
  see :func:`tolist_max_elements`) and ``isoformat()`` that succeeds, and the
  converted value is encoded in its place (again gracefully). An object none
  of them converts becomes a *marker*, the map ``{"__ffi_unserializable__":
  True, "__type__": "module.QualName"}``, with a ``"__repr__"`` as
  ``SNAKEPIT_UNSERIALIZABLE_DETAIL`` asks (:func:`make_marker`). The rest of
  the value crosses unchanged.
* ``ref``: the object stays in the worker and crosses as an object ref, as
  the results of the universal FFI do.
* ``error``: the request fails with an ``ENCODING`` error naming the type and
  where it sits.

Values that do have a wire form keep it in every mode: ints stay ints,
datetimes stay datetimes, numpy arrays stay arrays. The fallback only runs
when the normal encoding of a value fails, so a result that encodes costs
nothing extra.

:class:`GracefulJSONEncoder` applies the same conversions and markers to
``json.dumps``, and :class:`TypeSerializer` encodes typed variable values
(``float``, ``integer``, ``string``, ``boolean``, ``choice``, ``module``,
``embedding``, ``tensor``) as protobuf ``Any`` messages.
"""

from __future__ import annotations

import array
import json
import math
import os
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any

from google.protobuf import any_pb2

from . import _codec, _ffi
from ._codec import safe_text

__all__ = [
    "BINARY_THRESHOLD",
    "CONVERSION_METHODS",
    "DEFAULT_REPR_MAXLEN",
    "DEFAULT_TOLIST_MAX_ELEMENTS",
    "DETAIL_ENV",
    "DETAIL_MODES",
    "MARKER_EVENT",
    "MAX_REPR_MAXLEN",
    "REPR_KEY",
    "REPR_MAXLEN_ENV",
    "TOLIST_MAX_ENV",
    "TYPE_KEY",
    "UNSERIALIZABLE_KEY",
    "UNSERIALIZABLE_MODES",
    "GracefulJSONEncoder",
    "TypeSerializer",
    "convert",
    "detail_mode",
    "is_unserializable_marker",
    "make_marker",
    "redact",
    "repr_maxlen",
    "to_jsonable",
    "tolist_max_elements",
    "type_name",
    "unserializable_info",
]

UNSERIALIZABLE_KEY = "__ffi_unserializable__"
"""Key of a marker map; its value is ``True``."""
TYPE_KEY = "__type__"
"""Key of a marker's type name, ``module.QualName``."""
REPR_KEY = "__repr__"
"""Key of a marker's optional description of the object."""

UNSERIALIZABLE_MODES = ("marker", "ref", "error")
"""Values of the worker's ``--unserializable`` option (default ``marker``)."""

CONVERSION_METHODS = ("model_dump", "to_dict", "_asdict", "tolist", "isoformat")
"""The methods tried, in this order, on an object without a wire form."""

DETAIL_ENV = "SNAKEPIT_UNSERIALIZABLE_DETAIL"
DETAIL_MODES = ("none", "type", "repr_truncated", "repr_redacted_truncated")
"""``none`` (default): type only; ``type``: a ``__repr__`` placeholder naming
the type (the object's own repr is never called); ``repr_truncated``: the
object's repr, cut to :func:`repr_maxlen`; ``repr_redacted_truncated``: the
same with common secrets redacted first (:func:`redact`)."""
REPR_MAXLEN_ENV = "SNAKEPIT_UNSERIALIZABLE_REPR_MAXLEN"
DEFAULT_REPR_MAXLEN = 500
MAX_REPR_MAXLEN = 2000
TOLIST_MAX_ENV = "SNAKEPIT_TOLIST_MAX_ELEMENTS"
DEFAULT_TOLIST_MAX_ELEMENTS = 1_000_000

MARKER_EVENT = "snakepit.serialization.unserializable_marker"
"""Telemetry event sent the first time a worker makes a marker for a type
(measurement ``first_seen`` = 1, metadata ``type``; never the repr). At most
:data:`_MAX_SEEN_TYPES` types are reported per process."""
_MAX_SEEN_TYPES = 10_000

BINARY_THRESHOLD = 10_240
"""Bytes (8 per element) above which :class:`TypeSerializer` sends an
``embedding`` or ``tensor`` as binary data beside its ``Any`` message."""


# ------------------------------------------------------------ configuration


def detail_mode() -> str:
    """The marker detail mode from ``SNAKEPIT_UNSERIALIZABLE_DETAIL`` (an
    unknown value counts as ``none``)."""
    mode = os.environ.get(DETAIL_ENV, "").strip().lower()
    return mode if mode in DETAIL_MODES else "none"


def _int_env(name: str, default: int, low: int) -> int:
    raw = os.environ.get(name, "").strip().replace("_", "")
    try:
        n = int(raw)
    except ValueError:
        return default
    return n if n >= low else default


def repr_maxlen() -> int:
    """The longest ``__repr__`` a marker carries: ``SNAKEPIT_UNSERIALIZABLE_REPR_MAXLEN``
    (default 500; at most 2000, larger values are clamped; invalid or below 1: the default)."""
    return min(_int_env(REPR_MAXLEN_ENV, DEFAULT_REPR_MAXLEN, 1), MAX_REPR_MAXLEN)


def tolist_max_elements() -> int:
    """The most elements ``tolist()`` may give: ``SNAKEPIT_TOLIST_MAX_ELEMENTS``
    (default 1,000,000; invalid or negative: the default)."""
    return _int_env(TOLIST_MAX_ENV, DEFAULT_TOLIST_MAX_ELEMENTS, 0)


# ------------------------------------------------------------------ markers

_REDACTED = "<REDACTED>"
_SECRET_KEYS = (
    r"api[_-]?key|apikey|access[_-]?token|refresh[_-]?token|id[_-]?token|auth[_-]?token|token|secret|"
    r"client[_-]?secret|secret[_-]?key|private[_-]?key|password|passwd|pwd|authorization|credentials?"
)
_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    # "api_key": "...", 'password': '...' (JSON and dict reprs)
    (
        re.compile(r"""(?P<k>(?P<q>["'])(?:""" + _SECRET_KEYS + r""")(?P=q)\s*:\s*)(?P<v>["'])(?:\\.|(?!(?P=v)).)*(?P=v)""", re.I),
        r"\g<k>\g<v>" + _REDACTED + r"\g<v>",
    ),
    (re.compile(r"\b(Bearer)\s+[A-Za-z0-9\-._~+/]+=*", re.I), r"\1 " + _REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), "sk-" + _REDACTED),
)


def redact(text: str) -> str:
    """``text`` with common secrets replaced by ``<REDACTED>``: ``sk-...``
    API keys, bearer tokens and the values of quoted credential keys
    (``"api_key": "..."``, ``'password': '...'``, ``"token": ...``).
    Best effort, not a security boundary."""
    for pattern, repl in _REDACTIONS:
        text = pattern.sub(repl, text)
    return text


_type_names: dict[type, str] = {}


def type_name(obj: Any) -> str:
    """``module.QualName`` of ``obj``'s type, under the module users import
    it from (``pathlib.PosixPath``, not ``pathlib._local.PosixPath``)."""
    t = type(obj)
    name = _type_names.get(t)
    if name is None:
        mod = _ffi.public_module(t)
        qual = getattr(t, "__qualname__", t.__name__)
        name = safe_text(f"{mod}.{qual}" if mod else qual)
        _type_names[t] = name
    return name


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 3] + "..." if limit > 3 else text[:limit]


def _describe(obj: Any, name: str, mode: str) -> str | None:
    if mode == "type":
        return f"<unserializable {name}>"
    if mode not in ("repr_truncated", "repr_redacted_truncated"):
        return None
    try:
        text = repr(obj)
        if not isinstance(text, str):
            raise TypeError("__repr__ returned a non-string")
    except Exception as e:
        text = f"<{name} object (repr failed: {type(e).__name__})>"
    if mode == "repr_redacted_truncated":
        text = redact(text)
    return safe_text(_truncate(text, repr_maxlen()))


_seen_lock = threading.Lock()
_seen_types: set[str] = set()


def _report_first(name: str) -> None:
    with _seen_lock:
        if name in _seen_types or len(_seen_types) >= _MAX_SEEN_TYPES:
            return
        _seen_types.add(name)
    try:
        from . import telemetry

        telemetry.emit(MARKER_EVENT, {"first_seen": 1}, {"type": name})
    except Exception:
        pass


def make_marker(obj: Any) -> dict[str, Any]:
    """The marker map standing for ``obj``: ``UNSERIALIZABLE_KEY: True``,
    ``TYPE_KEY``: its type name, and ``REPR_KEY`` when the detail mode
    (:func:`detail_mode`) includes one."""
    name = type_name(obj)
    marker: dict[str, Any] = {UNSERIALIZABLE_KEY: True, TYPE_KEY: name}
    described = _describe(obj, name, detail_mode())
    if described is not None:
        marker[REPR_KEY] = described
    _report_first(name)
    return marker


def is_unserializable_marker(value: Any) -> bool:
    """Whether ``value`` is a marker map."""
    return isinstance(value, Mapping) and value.get(UNSERIALIZABLE_KEY) is True and isinstance(value.get(TYPE_KEY), str)


def unserializable_info(value: Any) -> dict[str, str | None]:
    """``{"type": ..., "repr": ... or None}`` of a marker; ``ValueError`` if
    ``value`` is not one."""
    if not is_unserializable_marker(value):
        raise ValueError("not an unserializable marker")
    r = value.get(REPR_KEY)
    return {"type": value[TYPE_KEY], "repr": r if isinstance(r, str) else None}


# --------------------------------------------------------------- conversion

_NO_VALUE: Any = object()


def _estimated_elements(obj: Any) -> int | None:
    """How many elements ``obj.tolist()`` would give, when that can be told
    without calling it: numpy arrays exactly; sparse matrices (``nnz`` and
    ``shape``: their dense size) and pandas objects (``size`` and ``values``)
    by their attributes."""
    np = sys.modules.get("numpy")
    try:
        if np is not None and isinstance(obj, np.ndarray):
            return int(obj.size)
        if hasattr(obj, "nnz") and hasattr(obj, "shape"):
            shape = tuple(obj.shape)
            if all(isinstance(d, int) for d in shape):
                dense: int = math.prod(shape)
                return dense
        if hasattr(obj, "values") and hasattr(obj, "size"):
            size = obj.size
            if isinstance(size, int):
                return size
    except Exception:
        return None
    return None


def _more_elements_than(value: Any, limit: int) -> bool:
    """Whether the (nested) lists of ``value`` hold more than ``limit`` leaves."""
    if not isinstance(value, (list, tuple)):
        return limit < 1
    count = 0
    stack = [value]
    while stack:
        for item in stack.pop():
            if isinstance(item, (list, tuple)):
                stack.append(item)
            else:
                count += 1
                if count > limit:
                    return True
    return False


def convert(obj: Any) -> tuple[bool, Any]:
    """``(True, converted)`` from the first of :data:`CONVERSION_METHODS` on
    ``obj`` that succeeds, else ``(False, None)``.

    A method that raises is skipped. ``tolist()`` is guarded by
    :func:`tolist_max_elements`: an object known to be larger is not converted
    at all (its method is not called), and a result found larger afterwards is
    dropped; either way ``(False, None)``. Classes are never converted."""
    if isinstance(obj, type):
        return False, None
    limit = 0
    for name in CONVERSION_METHODS:
        try:
            method = getattr(obj, name, None)
        except Exception:
            continue
        if method is None or not callable(method):
            continue
        if name == "tolist":
            limit = tolist_max_elements()
            estimate = _estimated_elements(obj)
            if estimate is not None and estimate > limit:
                return False, None
        try:
            out = method()
        except Exception:
            continue
        if name == "tolist" and _more_elements_than(out, limit):
            return False, None
        return True, out
    return False, None


# --------------------------------------------------------------------- JSON

_JSON_SCALARS = (str, int, float, bool, type(None))
_JSON_KEYS = (str, int, float, bool, type(None))


def _jsonable(obj: Any, depth: int, hops: int, path: set[int]) -> Any:
    if isinstance(obj, _JSON_SCALARS):
        return obj
    is_map = isinstance(obj, dict)
    if is_map or isinstance(obj, (list, tuple)):
        oid = id(obj)
        if oid in path or depth >= _codec.MAX_DEPTH:
            return make_marker(obj)
        path.add(oid)
        try:
            if is_map:
                return {
                    (k if isinstance(k, _JSON_KEYS) else _json_key(k)): _jsonable(v, depth + 1, hops, path)
                    for k, v in obj.items()
                }
            return [_jsonable(x, depth + 1, hops, path) for x in obj]
        finally:
            path.discard(oid)
    oid = id(obj)
    if hops < _codec.MAX_DEPTH and oid not in path:
        ok, converted = convert(obj)
        if ok:
            path.add(oid)
            try:
                return _jsonable(converted, depth, hops + 1, path)
            finally:
                path.discard(oid)
    return make_marker(obj)


def _json_key(key: Any) -> str:
    ok, converted = convert(key)
    if ok and isinstance(converted, str):
        return converted
    return type_name(key) if isinstance(key, type) else safe_text(str(key))


def to_jsonable(value: Any) -> Any:
    """``value`` made of JSON types only: objects converted as in
    :func:`convert`, the rest (and containers met again inside themselves, or
    nested deeper than 100 levels) replaced by markers; dict keys JSON cannot
    hold become strings."""
    return _jsonable(value, 0, 0, set())


class GracefulJSONEncoder(json.JSONEncoder):
    """A ``json.JSONEncoder`` that never fails on an object: what JSON has no
    form for is converted by its ``model_dump``/``to_dict``/``_asdict``/
    ``tolist``/``isoformat`` method (datetimes become ISO 8601 text), or
    becomes a marker map::

        json.dumps({"when": datetime.now(), "conn": conn}, cls=GracefulJSONEncoder)
        # {"when": "2024-01-11T10:30:00", "conn": {"__ffi_unserializable__": true, "__type__": "db.Connection"}}
    """

    def default(self, o: Any) -> Any:
        return to_jsonable(o)


# ----------------------------------------------------------- typed variables

_TYPE_URL_PREFIX = "type.googleapis.com/snakepit."
_BINARY_SUFFIX = ".binary"


def _flatten(data: Any, out: list[float]) -> list[int]:
    """Appends the numbers of nested lists ``data`` to ``out``; their shape."""
    if isinstance(data, (list, tuple)):
        shapes = [_flatten(x, out) for x in data]
        inner = shapes[0] if shapes else []
        if any(s != inner for s in shapes):
            raise ValueError("tensor data is ragged")
        return [len(data), *inner]
    out.append(float(data))
    return []


def _nest(flat: list[float], shape: list[int]) -> Any:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    step = math.prod(shape[1:])
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


class TypeSerializer:
    """Typed variable values as protobuf ``Any`` messages.

    ``encode_any(value, var_type)`` gives ``(any_msg, binary)``: the value as
    JSON in ``any_msg.value`` under the type URL
    ``type.googleapis.com/snakepit.<var_type>``, and ``binary`` ``None``; an
    ``embedding`` or ``tensor`` larger than :data:`BINARY_THRESHOLD` bytes
    instead carries its shape in JSON under ``...<var_type>.binary`` and its
    numbers as little-endian float64 ``binary``. ``decode_any(any_msg,
    binary)`` reverses it. Non-finite floats cross as ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"``. Objects JSON cannot hold are converted
    or marked as by :class:`GracefulJSONEncoder`.
    """

    @staticmethod
    def normalize(value: Any, var_type: str) -> Any:
        """``value`` in the canonical form of ``var_type``; ``ValueError`` if it does not fit."""
        if var_type == "float":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            raise ValueError(f"expected a number for a float, got {type(value).__name__}")
        if var_type == "integer":
            if isinstance(value, bool):
                raise ValueError("expected an integer, got bool")
            if isinstance(value, int):
                return int(value)
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"expected an integer, got {value!r}")
        if var_type in ("string", "choice", "module"):
            return str(value)
        if var_type == "boolean":
            if isinstance(value, bool):
                return value
            raise ValueError(f"expected a bool, got {type(value).__name__}")
        if var_type == "embedding":
            if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
                value = value.tolist()
            if isinstance(value, (list, tuple)):
                return [float(x) for x in value]
            raise ValueError(f"expected a list of numbers for an embedding, got {type(value).__name__}")
        if var_type == "tensor":
            if isinstance(value, Mapping) and "shape" in value and "data" in value:
                return {"shape": list(value["shape"]), "data": value["data"]}
            if hasattr(value, "shape") and hasattr(value, "tolist"):
                return {"shape": [int(d) for d in value.shape], "data": value.tolist()}
            if isinstance(value, (list, tuple)):
                flat: list[float] = []
                shape = _flatten(value, flat)
                return {"shape": shape, "data": _nest(flat, shape) if shape else []}
            raise ValueError(f"expected an array or {{'shape', 'data'}} for a tensor, got {type(value).__name__}")
        return value

    @staticmethod
    def encode_any(value: Any, var_type: str) -> tuple[any_pb2.Any, bytes | None]:
        """``(any_msg, binary)`` for ``value`` of type ``var_type`` (see the class)."""
        normalized = TypeSerializer.normalize(value, var_type)
        msg = any_pb2.Any()
        if var_type in ("embedding", "tensor"):
            data = normalized if var_type == "embedding" else normalized["data"]
            flat: list[float] = []
            shape = _flatten(data, flat)
            if len(flat) * 8 > BINARY_THRESHOLD:
                meta = {"shape": normalized["shape"] if var_type == "tensor" else shape, "dtype": "float64"}
                msg.type_url = _TYPE_URL_PREFIX + var_type + _BINARY_SUFFIX
                msg.value = json.dumps(meta).encode()
                numbers = array.array("d", flat)
                if sys.byteorder != "little":
                    numbers.byteswap()
                return msg, numbers.tobytes()
        msg.type_url = _TYPE_URL_PREFIX + var_type
        msg.value = json.dumps(_special_floats(normalized), cls=GracefulJSONEncoder).encode()
        return msg, None

    @staticmethod
    def decode_any(any_msg: any_pb2.Any, binary_data: bytes | None = None) -> Any:
        """The value of ``any_msg`` (and its ``binary_data``), as :meth:`encode_any` made them."""
        url = any_msg.type_url
        tail = url.rsplit("/", 1)[-1]
        if tail.endswith(_BINARY_SUFFIX) and binary_data is not None:
            var_type = tail[: -len(_BINARY_SUFFIX)].rsplit(".", 1)[-1]
            meta = json.loads(any_msg.value.decode())
            numbers = array.array("d")
            numbers.frombytes(binary_data)
            if sys.byteorder != "little":
                numbers.byteswap()
            shape = [int(d) for d in meta.get("shape", [len(numbers)])]
            flat = numbers.tolist()
            if var_type == "tensor":
                return {"shape": shape, "data": _nest(flat, shape) if shape else flat}
            return flat
        var_type = tail.rsplit(".", 1)[-1]
        value = json.loads(any_msg.value.decode()) if any_msg.value else None
        if var_type == "float":
            if isinstance(value, str):
                return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(value, value)
            return float(value) if isinstance(value, (int, float)) else value
        if var_type == "integer" and isinstance(value, (int, float)):
            return int(value)
        return value

    @staticmethod
    def validate_constraints(value: Any, var_type: str, constraints: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` when ``value`` breaks ``constraints``: ``min``/``max``
        (numbers), ``min_length``/``max_length`` (strings), ``choices``,
        ``allowed_modules``, ``dimensions`` (embeddings), ``shape`` (tensors)."""
        if var_type in ("float", "integer"):
            low, high = constraints.get("min"), constraints.get("max")
            if low is not None and value < low:
                raise ValueError(f"{value} is below the minimum {low}")
            if high is not None and value > high:
                raise ValueError(f"{value} is above the maximum {high}")
        elif var_type == "string":
            n = len(value)
            low_len, high_len = constraints.get("min_length"), constraints.get("max_length")
            if low_len is not None and n < low_len:
                raise ValueError(f"string of length {n} is shorter than {low_len}")
            if high_len is not None and n > high_len:
                raise ValueError(f"string of length {n} is longer than {high_len}")
        elif var_type == "choice":
            choices = constraints.get("choices")
            if choices and value not in choices:
                raise ValueError(f"{value!r} is not one of {list(choices)!r}")
        elif var_type == "module":
            allowed = constraints.get("allowed_modules")
            if allowed and value not in allowed:
                raise ValueError(f"module {value!r} is not one of {list(allowed)!r}")
        elif var_type == "embedding":
            dims = constraints.get("dimensions")
            if dims is not None and len(value) != dims:
                raise ValueError(f"embedding has {len(value)} dimensions, expected {dims}")
        elif var_type == "tensor":
            want = constraints.get("shape")
            if want is not None:
                have = list(value["shape"]) if isinstance(value, Mapping) else [int(d) for d in value.shape]
                if have != list(want):
                    raise ValueError(f"tensor shape {have} is not {list(want)}")


def _special_floats(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value
