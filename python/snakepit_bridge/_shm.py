"""Shared-memory arenas of a local worker (issue 16, ``notes/shm_spec.md``).

The host passes two memfds at spawn: its own arena (HOST, one per pool,
which the worker maps read-only) and this worker's arena (WORKER, which the
worker maps read-write and the host read-only), with ``--shm-host-fd``,
``--shm-worker-fd``, ``--shm-bytes`` and ``--shm-threshold``. Without them
nothing here is active and every value travels inline.

* WORKER arena: a page-aligned first-fit allocator with coalescing. Each
  allocation counts the references the host holds (+1 each time a frame the
  worker sends names it, -1 per offset in the host's ReleaseShared) and its
  local owners (a ``zero_copy.empty`` buffer alive); both 0 frees it.
  Finalizers never take the allocator's lock: a local owner that dies only
  queues its offset, taken under the lock by the next allocation, release
  or ``stats()``.
* HOST arena: decoding a region makes a read-only numpy array over the
  mapping through a lease whose finalizer queues the offset (a deque append
  and a byte down a pipe, no lock); shared ``bytes`` are copied and queued at
  once. Queued offsets go back to the host as ReleaseShared frames (id 0)
  with the next frame the worker writes, or within about a millisecond by the
  flusher thread.
* Encoding: the frame builders (``_frames.result``/``chunk``/``host_call``)
  open a scope on their thread (``open_refs``) that collects the host
  references the frame adds; a frame that fails to build (or is never sent)
  gives them back (``close_refs``/``unsend``). Outside such a scope (the
  tests' client, telemetry) values stay inline.
"""

from __future__ import annotations

import bisect
import collections
import ctypes
import mmap
import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from . import _codec, _numpy
from ._codec import DecodingError, SharedMemoryExhausted
from ._proto import snakepit_pb2 as pb

T = TypeVar("T")

__all__: list[str] = []

PAGE = 4096
HOST = pb.SHARED_ARENA_HOST
WORKER = pb.SHARED_ARENA_WORKER
# Offsets per ReleaseShared frame: 90 ten-byte varints stay under the
# smallest max_frame_bytes (1024).
_OFFSETS_PER_FRAME = 90

# HOST-arena offsets to give back to the host (appended by finalizers: a
# deque append takes no lock). Always present, empty while shared memory is off.
RELEASES: collections.deque[int] = collections.deque()
_TL = _codec.SHM_THREAD


class WorkerArena:
    """The worker's own arena: allocations and their reference counts."""

    def __init__(self, fd: int, size: int) -> None:
        self.size = size
        self.mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self._anchor = ctypes.c_char.from_buffer(self.mm)
        self.addr = ctypes.addressof(self._anchor)
        self.end = self.addr + size
        self.lock = threading.Lock()
        # Free blocks [offset, length], sorted by offset, never adjacent.
        self.free: list[list[int]] = [[0, size]]
        # Live allocations: sorted starts, and start -> [length, host refs, local owners].
        self.starts: list[int] = []
        self.allocs: dict[int, list[int]] = {}
        self.in_use = 0
        # Offsets of allocations whose local owner died (appended by finalizers).
        self.drops: collections.deque[int] = collections.deque()

    # -------------------------------------------------------------- locked

    def _find(self, off: int) -> int:
        """The start of the live allocation holding `off`, or -1."""
        i = bisect.bisect_right(self.starts, off) - 1
        if i < 0:
            return -1
        s = self.starts[i]
        return s if off < s + self.allocs[s][0] else -1

    def _free_locked(self, start: int) -> None:
        length = self.allocs.pop(start)[0]
        del self.starts[bisect.bisect_left(self.starts, start)]
        self.in_use -= length
        free = self.free
        i = bisect.bisect_left(free, start, key=lambda b: b[0])
        # Coalesce with the block before and the one after.
        if i > 0 and free[i - 1][0] + free[i - 1][1] == start:
            prev = free[i - 1]
            prev[1] += length
            if i < len(free) and prev[0] + prev[1] == free[i][0]:
                prev[1] += free[i][1]
                del free[i]
            return
        if i < len(free) and start + length == free[i][0]:
            free[i][0] = start
            free[i][1] += length
            return
        free.insert(i, [start, length])

    def _drain_locked(self) -> None:
        drops = self.drops
        while drops:
            start = drops.popleft()
            a = self.allocs.get(start)
            if a is None or a[2] <= 0:
                continue
            a[2] -= 1
            if a[1] == 0 and a[2] == 0:
                self._free_locked(start)

    # -------------------------------------------------------------- public

    def alloc(self, nbytes: int, host: int, local: int) -> int:
        """A new allocation of at least `nbytes` (page rounded) with the
        given counts; raises SharedMemoryExhausted when no block fits."""
        n = max(PAGE, (nbytes + PAGE - 1) // PAGE * PAGE)
        with self.lock:
            self._drain_locked()
            free = self.free
            for i, blk in enumerate(free):
                if blk[1] >= n:
                    off = blk[0]
                    if blk[1] == n:
                        del free[i]
                    else:
                        blk[0] += n
                        blk[1] -= n
                    self.allocs[off] = [n, host, local]
                    bisect.insort(self.starts, off)
                    self.in_use += n
                    return off
            in_use = self.in_use
        raise SharedMemoryExhausted(nbytes, self.size, in_use)

    def add_host_ref(self, off: int) -> bool:
        """One more host reference to the allocation holding `off` (False: none does)."""
        with self.lock:
            start = self._find(off)
            if start < 0:
                return False
            self.allocs[start][1] += 1
            return True

    def release_host(self, offsets: Iterable[int], quiet: bool = False) -> None:
        """The host gave back one reference per offset (or a frame naming
        them was never sent: `quiet`). Unknown offsets are reported on stderr."""
        unknown: list[int] = []
        with self.lock:
            for off in offsets:
                start = self._find(off)
                a = self.allocs.get(start) if start >= 0 else None
                if a is None or a[1] <= 0:
                    unknown.append(off)
                    continue
                a[1] -= 1
                if a[1] == 0 and a[2] == 0:
                    self._free_locked(start)
            self._drain_locked()
        if unknown and not quiet:
            shown = ", ".join(str(o) for o in unknown[:10])
            sys.stderr.write(
                f"snakepit worker: ReleaseShared named {len(unknown)} offset(s) of no held region "
                f"of the worker arena ({shown}); ignored\n"
            )

    def stats(self) -> dict[str, int]:
        with self.lock:
            self._drain_locked()
            return {
                "capacity": self.size,
                "in_use": self.in_use,
                "allocations": len(self.allocs),
                "host_references": sum(a[1] for a in self.allocs.values()),
                "free_blocks": len(self.free),
            }


class HostArena:
    """The pool's arena, mapped read-only."""

    def __init__(self, fd: int, size: int) -> None:
        self.size = size
        self.mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        self._addr = 0
        self._anchor: Any = None

    def holds(self, ptr: int) -> bool:
        """Whether address `ptr` lies in the mapping (False before any array was decoded from it)."""
        return bool(self._addr) and self._addr <= ptr < self._addr + self.size

    @property
    def addr(self) -> int:
        if not self._addr:
            np = _numpy.load("an ndarray in shared memory")
            self._anchor = np.frombuffer(self.mm, dtype=np.uint8)
            self._addr = int(self._anchor.__array_interface__["data"][0])
        return self._addr


class _State:
    def __init__(self, host: HostArena, worker: WorkerArena, threshold: int) -> None:
        self.host = host
        self.worker = worker
        self.threshold = threshold
        r, w = os.pipe()
        os.set_blocking(w, False)
        self.wake_r = r
        self.wake_w = w
        self.leases = 0


STATE: _State | None = None


def install(host_fd: int, worker_fd: int, size: int, threshold: int) -> None:
    """Maps both arenas and turns shared memory on in the codec."""
    global STATE
    for fd, name in ((host_fd, "host"), (worker_fd, "worker")):
        st = os.fstat(fd)
        if st.st_size < size:
            raise ValueError(f"the {name} arena (fd {fd}) holds {st.st_size} bytes, fewer than --shm-bytes {size}")
    STATE = _State(HostArena(host_fd, size), WorkerArena(worker_fd, size), threshold)
    # The mappings hold their own references: the inherited fds are not
    # needed any more (and no subprocess of a tool can inherit them).
    for fd in {host_fd, worker_fd}:
        try:
            os.close(fd)
        except OSError:
            pass
    _codec.enable_shared_memory(threshold, encode_array, encode_bytes, decode_array, decode_bytes)


def enabled() -> bool:
    return STATE is not None


# ------------------------------------------------------------ release queue


def _wake() -> None:
    s = STATE
    if s is not None:
        try:
            os.write(s.wake_w, b"\0")
        except OSError:  # the pipe is full: the flusher is awake anyway
            pass


def queue_release(off: int) -> None:
    """Give back one reference to HOST-arena region `off` (safe in a finalizer: no lock)."""
    RELEASES.append(off)
    _wake()


def take_releases() -> list[int]:
    """The queued HOST-arena offsets, taken off the queue."""
    out: list[int] = []
    pop = RELEASES.popleft
    try:
        while True:
            out.append(pop())
    except IndexError:
        pass
    return out


def release_frames(offsets: list[int]) -> bytes:
    """The ReleaseShared frames (id 0) giving back `offsets`."""
    from ._frames import release_shared

    return b"".join(
        release_shared(offsets[i : i + _OFFSETS_PER_FRAME]) for i in range(0, len(offsets), _OFFSETS_PER_FRAME)
    )


def drain_frames() -> bytes:
    """ReleaseShared frames for every queued offset (b"" for none)."""
    offs = take_releases()
    return release_frames(offs) if offs else b""


def start_flusher(send: Callable[[bytes], None]) -> None:
    """Starts the thread that sends queued releases when nothing else goes out."""
    s = STATE
    if s is None:
        return

    def main() -> None:
        while True:
            try:
                os.read(s.wake_r, 4096)
            except OSError:
                return
            if RELEASES:
                # `send` adds the queued releases to what it writes.
                send(b"")

    threading.Thread(target=main, name="snakepit-shm-release", daemon=True).start()


# ------------------------------------------------------------------ encoding


def open_refs() -> list[int] | None:
    """Starts collecting, on this thread, the WORKER references a frame being built adds."""
    if STATE is None:
        return None
    refs: list[int] = []
    _TL.refs = refs
    return refs


def close_refs(refs: list[int] | None, built: bool) -> None:
    """Ends the collection; a frame that was not `built` gives its references back."""
    _TL.refs = None
    if refs is None:
        return
    if built:
        _TL.last = refs
    elif refs:
        unsend(refs)


def collect(build: Callable[[], T]) -> tuple[T, list[int] | None]:
    """Runs `build()` (encoding a frame) collecting the WORKER references it
    adds: its result and them (None without shared memory). A build that
    raises gives them back before the exception goes on."""
    refs = open_refs() if STATE is not None else None
    try:
        out = build()
    except BaseException:
        close_refs(refs, False)
        raise
    close_refs(refs, True)
    return out, refs


def take_last() -> list[int] | None:
    """The references of the last frame built on this thread (for a sender
    that may end up not sending it)."""
    refs = _TL.last
    _TL.last = None
    return refs


def unsend(refs: list[int] | None) -> None:
    """A frame naming `refs` was never sent: the host references go (and
    `refs` is emptied, so that they cannot go twice)."""
    s = STATE
    if s is not None and refs:
        s.worker.release_host(refs, quiet=True)
        refs.clear()


def _region(nd_or_value: Any, off: int, length: int) -> None:
    nd_or_value.arena = WORKER
    nd_or_value.offset = off
    nd_or_value.length = length


def encode_array(obj: Any, dtype: Any, nd: pb.NdArray, refs: list[int]) -> None:
    """Fill `nd` with `obj` in the WORKER arena: without a copy when it is a
    C-contiguous little-endian array there already (it is made read-only),
    else copied once into a new allocation (C order, little endian)."""
    np = sys.modules["numpy"]
    s = STATE
    assert s is not None
    w = s.worker
    n = obj.nbytes
    ptr = obj.__array_interface__["data"][0]
    if w.addr <= ptr < w.end and obj.flags.c_contiguous and dtype.byteorder != ">":
        off = ptr - w.addr
        if w.add_host_ref(off):
            refs.append(off)
            obj.flags.writeable = False
            nd.dtype = dtype.name
            nd.shape.extend(obj.shape)
            _region(nd.shared, off, n)
            return
    off = w.alloc(n, 1, 0)
    refs.append(off)
    view = np.ndarray(obj.shape, dtype=dtype.newbyteorder("<"), buffer=w.mm, offset=off)
    np.copyto(view, obj, casting="unsafe")
    nd.dtype = dtype.name
    nd.shape.extend(obj.shape)
    _region(nd.shared, off, n)


def encode_bytes(obj: Any, n: int, out: pb.Value, refs: list[int]) -> None:
    """Fill `out` with the `n` bytes of bytes-like `obj` in the WORKER arena."""
    s = STATE
    assert s is not None
    w = s.worker
    off = w.alloc(n, 1, 0)
    refs.append(off)
    if type(obj) is memoryview and not obj.c_contiguous:
        obj = obj.tobytes()
    w.mm[off : off + n] = obj if type(obj) is not memoryview else obj.cast("B")
    _region(out.shared_bytes, off, n)


# ------------------------------------------------------------------ decoding


class _Lease:
    """A read-only view of a HOST-arena region: numpy arrays over it keep it
    alive; when it goes, its offset is given back to the host."""

    __slots__ = ("__array_interface__", "offset", "__weakref__")
    __array_interface__: dict[str, Any]
    offset: int

    def __del__(self) -> None:
        try:
            queue_release(self.offset)
        except Exception:
            pass


def _checked_region(r: pb.SharedRegion, what: str) -> tuple[int, int]:
    s = STATE
    if s is None:
        raise DecodingError(f"received {what} in shared memory, but this worker has no shared memory")
    if r.arena != HOST:
        raise DecodingError(
            f"received {what} in shared arena {pb.SharedArena.Name(r.arena) if r.arena in (0, 1, 2) else r.arena}; "
            "the host may only name regions of its own arena (SHARED_ARENA_HOST)"
        )
    off, length = r.offset, r.length
    if off + length > s.host.size:
        raise DecodingError(
            f"received {what} at offset {off}, {length} bytes, outside the host arena ({s.host.size} bytes)"
        )
    return off, length


def _decoded(off: int) -> None:
    d = _TL.decoded
    if d is not None:
        d.append(off)


def decode_array(nd: pb.NdArray, dtype: Any, shape: tuple[int, ...], n: int) -> Any:
    """A read-only numpy array over the HOST-arena region `nd.shared`."""
    np = _numpy.load("an ndarray in shared memory")
    off, length = _checked_region(nd.shared, "an ndarray")
    _decoded(off)
    if length != n * dtype.itemsize:
        queue_release(off)
        raise DecodingError(
            f"shared ndarray region has {length} bytes, dtype {nd.dtype} with shape {shape} needs {n * dtype.itemsize}"
        )
    s = STATE
    assert s is not None
    lease = _Lease()
    lease.offset = off
    lease.__array_interface__ = {
        "data": (s.host.addr + off, True),
        "shape": shape,
        "typestr": dtype.newbyteorder("<").str,
        "version": 3,
    }
    return np.asarray(lease)


def decode_bytes(v: pb.Value) -> bytes:
    """A copy of the HOST-arena region `v.shared_bytes`; the region goes back at once."""
    off, length = _checked_region(v.shared_bytes, "bytes")
    _decoded(off)
    s = STATE
    assert s is not None
    try:
        return s.host.mm[off : off + length]
    finally:
        queue_release(off)


# -------------------------------------------------- regions never decoded


def host_regions(values: Iterable[pb.Value]) -> list[int]:
    """Offsets of the in-bounds HOST-arena regions named anywhere in `values`."""
    s = STATE
    if s is None:
        return []
    size = s.host.size
    out: list[int] = []
    stack = list(values)
    while stack:
        v = stack.pop()
        k = v.WhichOneof("kind")
        if k == "ndarray":
            if v.ndarray.HasField("shared"):
                r = v.ndarray.shared
            else:
                continue
        elif k == "shared_bytes":
            r = v.shared_bytes
        elif k in ("list", "tuple", "set", "frozenset"):
            stack.extend(getattr(v, k).items)
            continue
        elif k == "map":
            for e in v.map.entries:
                stack.append(e.key)
                stack.append(e.value)
            continue
        else:
            continue
        if r.arena == HOST and r.offset + r.length <= size:
            out.append(r.offset)
    return out


def execute_values(ex: pb.Execute | pb.BatchCall) -> list[pb.Value]:
    """The argument values of a request, its batch's calls' included (or of one call of a batch)."""
    values = [*ex.args, *ex.kwargs.values()]
    if isinstance(ex, pb.Execute):
        for call in ex.batch:
            values += [*call.args, *call.kwargs.values()]
    return values


def release_undecoded(values: Iterable[pb.Value]) -> None:
    """Gives back the HOST regions named in `values` that were never decoded."""
    offs = host_regions(values)
    for off in offs:
        queue_release(off)


def begin_decode() -> list[int] | None:
    """Starts noting, on this thread, the HOST regions decoding takes care of;
    returns the note it replaces (for `end_decode`)."""
    outer = _TL.decoded
    _TL.decoded = []
    return outer


def end_decode(values: Iterable[pb.Value] | None, outer: list[int] | None = None) -> None:
    """Ends the note (restoring `outer`); when the decode failed (`values`:
    what it was decoding), the regions it never reached are given back."""
    done = _TL.decoded
    _TL.decoded = outer
    if outer is not None and done:
        outer.extend(done)
    if values is None:
        return
    left = collections.Counter(host_regions(values))
    left.subtract(done or ())
    for off, count in left.items():
        for _ in range(count):
            queue_release(off)


def decode_guarded(v: pb.Value) -> Any:
    """``_codec.dec(v, 0)``; if it fails, the HOST regions in `v` it never
    reached are given back (host-call answers, variable updates)."""
    if STATE is None:
        return _codec.dec(v, 0)
    outer = begin_decode()
    try:
        out = _codec.dec(v, 0)
    except BaseException:
        end_decode([v], outer)
        raise
    end_decode(None, outer)
    return out


def drop_values(values: Iterable[pb.Value]) -> None:
    """Values that will never be decoded (an answer nobody waits for, an
    update of a watch that is gone): their HOST regions go back."""
    if STATE is not None:
        release_undecoded(values)


def stats() -> dict[str, Any]:
    s = STATE
    if s is None:
        return {"enabled": False}
    out: dict[str, Any] = {"enabled": True, "threshold": s.threshold}
    out.update(s.worker.stats())
    out["host_arena_bytes"] = s.host.size
    out["releases_queued"] = len(RELEASES)
    return out
