"""The ``marker`` and ``error`` modes of tool results and stream items on the wire.

Only used once the codec has failed to encode a value (``_frames``): the value
is encoded again into a ``snakepit.v1.Value`` with objects that have no wire
form converted (``serialization.convert``); what still has none is replaced
by a marker (``serialization.make_marker``), or, in the ``error`` mode, fails
the value with an ``EncodingError`` naming its type and where it is.
Everything with a wire form keeps it.
"""

from __future__ import annotations

from typing import Any

from . import _codec, _ffi
from ._codec import LIST_COST, MAP_COST, WIRE_DEPTH, EncodingError, NestingError
from ._proto import snakepit_pb2 as pb
from .serialization import convert, make_marker, type_name

__all__ = ["encode_with_markers", "recoverable"]


class _MarkerWalk:
    """Encodes a value into a ``Value`` with objects converted or marked.

    Containers are walked here (tracking the ones being walked: one met again
    inside itself becomes a marker, as does one nested so deep that a marker
    would no longer fit in a frame); other values go to the codec, whose hook
    (:meth:`hook`) converts what has no wire form and walks the converted
    value again. Conversions nest at most ``WIRE_DEPTH`` times."""

    __slots__ = ("path", "depth", "hops", "strict")

    def __init__(self, strict: bool = False) -> None:
        self.path: set[int] = set()
        self.depth = 0
        self.hops = 0
        # The error mode: what has no wire form after conversion fails the value.
        self.strict = strict

    def value(self, obj: Any, out: pb.Value, depth: int, hops: int) -> None:
        kind = _ffi.container_kind(obj)
        if kind is None:
            self.depth = depth
            self.hops = hops
            _codec.enc_value(obj, out, depth, self.hook)
            return
        oid = id(obj)
        cost = MAP_COST if kind == "map" else LIST_COST
        if oid in self.path or depth + cost + MAP_COST > WIRE_DEPTH:
            self.marker(obj, out, depth)
            return
        self.path.add(oid)
        depth += cost
        try:
            if kind == "map":
                m = out.map
                m.SetInParent()
                add_entry = m.entries.add
                key: Any = None
                in_key = False
                try:
                    for key, v in obj.items():
                        entry = add_entry()
                        in_key = True
                        self.value(key, entry.key, depth, hops)
                        in_key = False
                        self.value(v, entry.value, depth, hops)
                except EncodingError as e:
                    e._parts.append(f"<key {key!r}>" if in_key else f"[{key!r}]")
                    raise
            else:
                lst = getattr(out, kind)
                lst.SetInParent()
                add = lst.items.add
                i = 0
                try:
                    for i, item in enumerate(obj):  # noqa: B007
                        self.value(item, add(), depth, hops)
                except EncodingError as e:
                    e._parts.append(f"[{i}]" if kind in ("list", "tuple") else "{...}")
                    raise
        finally:
            self.path.discard(oid)

    def hook(self, obj: Any, out: pb.Value) -> None:
        depth, hops = self.depth, self.hops
        oid = id(obj)
        if hops < WIRE_DEPTH and oid not in self.path:
            ok, converted = convert(obj)
            if ok:
                self.path.add(oid)
                try:
                    self.value(converted, out, depth, hops + 1)
                finally:
                    self.path.discard(oid)
                return
        self.marker(obj, out, depth)

    def marker(self, obj: Any, out: pb.Value, depth: int) -> None:
        if self.strict:
            name = type_name(obj)
            raise EncodingError(f"cannot encode object of type {name}", python_type=name)
        out.Clear()
        _codec.enc_value(make_marker(obj), out, depth, self.hook)


def encode_with_markers(obj: Any, out: pb.Value, root: str = "value", strict: bool = False) -> None:
    """Fill ``out`` (an empty Value) with ``obj``, objects without a wire form
    converted or replaced by markers. Raises :class:`EncodingError` only for
    what neither can help (a ``str`` that is not valid UTF-8), or, `strict`
    (the ``error`` mode), for the first object conversion cannot help."""
    try:
        _MarkerWalk(strict).value(obj, out, 0, 0)
    except EncodingError as e:
        _codec.finish_error(e, root)
        raise
    except RecursionError:
        raise NestingError(f"value nested too deeply to encode at {root}", path=root) from None


def recoverable(e: EncodingError) -> bool:
    """Whether the marker walk may succeed where the codec raised ``e``: not
    for a full shared-memory arena or a ``str`` that is not valid UTF-8."""
    if isinstance(e, _codec.SharedMemoryExhausted):
        return False
    return isinstance(e, NestingError) or e.python_type != "str"
