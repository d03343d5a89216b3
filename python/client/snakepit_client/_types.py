"""The values a call can give back that are not plain Python objects.

``Ref`` and ``StreamRef`` name objects that stay in a worker (the universal
FFI); they are usable as arguments, and as targets, in later calls of the
session that made them. ``NdArray`` is an array as it travels, for a client
without numpy. ``Variable`` and ``VariableUpdate`` are a session's variables.
The codec (``_codec.py``) makes them; the clients (``_client.py``,
``_aio.py``) bind refs to the session they came from.
"""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["NdArray", "Ref", "StreamRef", "Variable", "VariableUpdate"]


class _SyncOwner(Protocol):
    def _ffi_next(self, stream: StreamRef, n: int) -> tuple[list[Any], bool]: ...


class _AsyncOwner(Protocol):
    async def _ffi_next(self, stream: StreamRef, n: int) -> tuple[list[Any], bool]: ...


@dataclass(frozen=True, eq=False)
class Ref:
    """A Python object that stays in the worker (``ObjectRef`` on the wire).

    Pass it as an argument, or as the target of ``method``/``attr``/
    ``set_attr``/``release_ref``, in the session that made it. Two refs are
    equal when they name the same object of the same session.
    """

    id: str
    session_id: str
    type_name: str = ""
    repr: str = ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and (self.id, self.session_id) == (other.id, other.session_id)

    def __hash__(self) -> int:
        return hash(("ref", self.id, self.session_id))

    def __repr__(self) -> str:
        shown = f" {self.repr}" if self.repr else ""
        return f"<Ref {self.id} {self.type_name}{shown}>"


@dataclass(frozen=True, eq=False)
class StreamRef:
    """An iterator or generator that stays in the worker.

    ``for item in stream_ref`` (``async for`` from an ``AsyncClient``) takes
    its items in batches; ``stream_ref.next(n)`` takes up to ``n`` of them (a
    shorter list once it is exhausted; ``await session.next(stream_ref, n)``
    from an ``AsyncClient``).
    """

    id: str
    session_id: str
    type_name: str = ""
    _owner: Any = field(default=None, repr=False, compare=False)

    BATCH = 64
    """Items asked for at a time while iterating."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StreamRef) and (self.id, self.session_id) == (other.id, other.session_id)

    def __hash__(self) -> int:
        return hash(("stream_ref", self.id, self.session_id))

    def __repr__(self) -> str:
        return f"<StreamRef {self.id} {self.type_name}>"

    def _sync_owner(self) -> _SyncOwner:
        if self._owner is None:
            raise TypeError("this StreamRef is bound to no session: use session.next(stream_ref, n)")
        if getattr(self._owner, "is_async", False):
            raise TypeError("this StreamRef came from an AsyncClient: use `async for` or `await session.next(ref, n)`")
        owner: _SyncOwner = self._owner
        return owner

    def next(self, n: int = 1) -> list[Any]:
        """Up to ``n`` more items; fewer (possibly none) once exhausted."""
        return self._sync_owner()._ffi_next(self, n)[0]

    def __iter__(self) -> Iterator[Any]:
        owner = self._sync_owner()
        done = False
        while not done:
            items, done = owner._ffi_next(self, self.BATCH)
            yield from items

    async def __aiter__(self) -> AsyncIterator[Any]:
        if self._owner is None or not getattr(self._owner, "is_async", False):
            raise TypeError("this StreamRef is not from an AsyncClient: use a plain `for`")
        owner: _AsyncOwner = self._owner
        done = False
        while not done:
            items, done = await owner._ffi_next(self, self.BATCH)
            for item in items:
                yield item


# numpy dtype name -> struct format character, for NdArray.tolist().
_STRUCT_FORMATS = {
    "bool": "?",
    "int8": "b",
    "uint8": "B",
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float16": "e",
    "float32": "f",
    "float64": "d",
    "complex64": "ff",
    "complex128": "dd",
}


@dataclass(frozen=True)
class NdArray:
    """An n-dimensional array as it travels: numpy dtype name, shape, and the
    raw elements (C order, little-endian). Results hold numpy arrays instead
    when numpy is installed; this type may be passed as an argument either way.
    """

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    def __post_init__(self) -> None:
        size = self.itemsize()
        if size is not None and len(self.data) != math.prod(self.shape) * size:
            raise ValueError(
                f"NdArray of dtype {self.dtype} and shape {self.shape} needs "
                f"{math.prod(self.shape) * size} bytes, got {len(self.data)}"
            )

    def __repr__(self) -> str:
        size = self.itemsize()
        if size is not None and len(self.data) <= 16 * size:
            return f"NdArray({self.dtype}, shape={self.shape}, {self.tolist()!r})"
        return f"NdArray({self.dtype}, shape={self.shape}, {len(self.data)} bytes)"

    def itemsize(self) -> int | None:
        """Bytes per element, when the dtype is one ``tolist`` knows."""
        fmt = _STRUCT_FORMATS.get(self.dtype)
        return None if fmt is None else struct.calcsize("<" + fmt)

    def tolist(self) -> Any:
        """The elements as nested lists of Python numbers (as numpy's ``tolist``)."""
        fmt = _STRUCT_FORMATS.get(self.dtype)
        if fmt is None:
            raise TypeError(f"NdArray.tolist does not know dtype {self.dtype!r}; install numpy")
        flat: list[Any] = [
            complex(*item) if len(item) == 2 else item[0] for item in struct.iter_unpack("<" + fmt, self.data)
        ]
        if not self.shape:
            return flat[0]

        def nest(start: int, dims: tuple[int, ...]) -> list[Any]:
            if len(dims) == 1:
                return flat[start : start + dims[0]]
            step = math.prod(dims[1:])
            return [nest(start + i * step, dims[1:]) for i in range(dims[0])]

        return nest(0, self.shape)


@dataclass(frozen=True)
class Variable:
    """A session variable: its value and version, type and constraints."""

    id: str
    name: str
    type: str
    value: Any
    version: int
    constraints: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VariableUpdate:
    """One change of a watched variable; ``source`` says who made it:
    ``"host"``, ``"python"`` or ``"initial"`` (its value when the watch began)."""

    name: str
    variable_id: str
    old_value: Any
    new_value: Any
    version: int
    source: str
    metadata: dict[str, str] = field(default_factory=dict)
