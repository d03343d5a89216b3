"""Arrays that cross to the host without copies (shared memory, issue 16).

A local worker has two arenas of shared memory: the host's (which it reads)
and its own (which it writes). An ndarray of at least the pool's
``shared_threshold_bytes`` (or ``bytes`` that long) travels in them instead
of inside the frame:

* a tool's result or chunk is copied once into the worker's arena (made C
  order, little endian on the way) -- or not at all when it was built there
  with :func:`empty`::

      out = zero_copy.empty((4096, 4096), "float32")
      np.matmul(a, b, out=out)
      return out          # crosses without a copy; marked read-only as it goes

* arrays from the host arrive as read-only numpy arrays over its arena (the
  host's bytes are never changed by Python); :func:`writable` gives a private
  copy to modify.

Without shared memory (remote workers, ``max_shared_bytes = 0``, a worker
run by hand) everything still works: :func:`empty` is ``numpy.empty`` and
values travel inline.
"""

from __future__ import annotations

import math
from typing import Any

from . import _codec, _numpy, _shm
from ._codec import SharedMemoryExhausted
from ._proto import snakepit_pb2 as pb

__all__ = ["SharedMemoryExhausted", "ZeroCopyRef", "empty", "enabled", "is_shared", "stats", "writable"]


class _Block:
    """Owns one allocation of the worker's arena for the arrays over it
    (a local owner in the allocation's count until it is collected)."""

    __slots__ = ("__array_interface__", "offset", "__weakref__")
    __array_interface__: dict[str, Any]
    offset: int

    def __del__(self) -> None:
        s = _shm.STATE
        if s is not None:
            # Only a deque append: the allocator takes it under its lock later.
            s.worker.drops.append(self.offset)


def enabled() -> bool:
    """Whether this worker has shared memory (else values travel inline)."""
    return _shm.enabled()


def empty(shape: Any, dtype: Any = "float64") -> Any:
    """A writable, C-contiguous, uninitialised numpy array in the worker's
    arena: returned from a tool (or yielded as a chunk) it crosses without a
    copy. ``numpy.empty`` when the worker has no shared memory (or the array
    is empty). Raises :class:`SharedMemoryExhausted` when the arena is full."""
    np = _numpy.load("zero_copy.empty")
    dt = np.dtype(dtype)
    if dt.hasobject or dt.fields is not None:
        raise TypeError(f"dtype {dt} has no wire form")
    shp = (shape,) if isinstance(shape, int) else tuple(int(n) for n in shape)
    nbytes = math.prod(shp) * dt.itemsize
    s = _shm.STATE
    if s is None or nbytes == 0:
        return np.empty(shp, dtype=dt)
    w = s.worker
    off = w.alloc(nbytes, 0, 1)
    block = _Block()
    block.offset = off
    block.__array_interface__ = {
        "data": (w.addr + off, False),
        "shape": shp,
        "typestr": dt.newbyteorder("<").str,
        "version": 3,
    }
    return np.asarray(block)


class ZeroCopyRef:
    """A thin wrapper naming an array meant to cross without copies: it
    encodes exactly as its array (``.array``) does."""

    __slots__ = ("array",)

    def __init__(self, array: Any) -> None:
        self.array = array

    def __repr__(self) -> str:
        a = self.array
        return f"ZeroCopyRef(shape={getattr(a, 'shape', None)}, dtype={getattr(a, 'dtype', None)}, shared={is_shared(a)})"


def _enc_ref(obj: Any, out: pb.Value, depth: int, hook: Any) -> None:
    _codec.enc_value(obj.array, out, depth, hook)


_codec.register_encoder(ZeroCopyRef, _enc_ref)


def _pointer(arr: Any) -> int:
    if isinstance(arr, ZeroCopyRef):
        arr = arr.array
    iface = getattr(arr, "__array_interface__", None)
    if not iface:
        return 0
    return int(iface["data"][0] or 0)


def is_shared(arr: Any) -> bool:
    """Whether the array's data lies in shared memory (either arena)."""
    s = _shm.STATE
    if s is None:
        return False
    p = _pointer(arr)
    if not p:
        return False
    if s.worker.addr <= p < s.worker.end:
        return True
    return s.host.holds(p)


def writable(arr: Any) -> Any:
    """A writable private copy of `arr` (an array from the host is read-only)."""
    np = _numpy.load("zero_copy.writable")
    if isinstance(arr, ZeroCopyRef):
        arr = arr.array
    return np.array(arr, copy=True)


def stats() -> dict[str, Any]:
    """The worker's shared memory: ``enabled``, ``threshold``, ``capacity``
    (bytes of the worker arena), ``in_use``, ``allocations``,
    ``host_references``, ``free_blocks``, ``host_arena_bytes``,
    ``releases_queued``."""
    return _shm.stats()
