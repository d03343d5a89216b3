"""Chunk frames of a stream held for one write.

Sending one small chunk per ``sendall`` costs a system call and the write lock
per item, more than encoding it. A stream therefore holds the frames its
generator produces and writes them at once: when they reach ``BATCH_BYTES``,
on the final chunk, before the stream waits (for credits, for an async
generator's await) or ends, and at the latest ``BOUND_S`` after the first held
frame. The stream itself checks that bound at every item; a ``Flusher`` thread
checks it while the generator blocks inside ``next()`` (a sync generator gives
no other sign that it waits), so a slow generator's chunk is not held (the
flusher looks less often at a stream busy writing its own batches: see
``Flusher``).

Frames are held under ``Held.lock`` and written under it too (then under the
worker's write lock), so whoever writes them, the stream or the flusher, they
leave in order.

Small items (ints, floats, bools, short strs, with no metadata and not final)
do not get a frame each: the stream appends their encoded values to
``Held.run`` without taking the lock, and whoever writes seals the items not
sealed yet into one Chunk frame carrying a run (``Chunk.run``, seq of its
first item), so a stream of small items pays per frame what it used to pay
per item. Only the stream appends to the run and only the stream empties it
(under the lock); the flusher seals up to the length it sees, so an item
appended meanwhile is sealed later, in order, never lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ._wire import SMALL_VARINTS, pack_len, scalar_value_bytes, varint

__all__: list[str] = []

# Write the held frames once they reach this many bytes.
BATCH_BYTES = 64 * 1024
# At the latest this long after the first held frame.
BOUND_S = 0.0002
# How often the flusher looks at a stream busy writing its own batches.
ACTIVE_TICK_S = 0.001

_clock = time.perf_counter


def chunk_prefix(fid: int) -> bytes:
    """The bytes of a Chunk frame of request `fid` before the Chunk's length."""
    return b"\x08" + varint(fid) + b'"'


# The tagged varints of small zigzag ints (Value field 3) and of small seqs
# (Chunk field 1; seq 0 is left out, as protobuf does).
_INT_SMALL = [b"\x18" + v for v in SMALL_VARINTS]
_SEQ_SMALL = [b""] + [b"\x08" + v for v in SMALL_VARINTS[1:]]


def scalar_chunk(prefix: bytes, seq: int, data: object, limit: int) -> bytes | None:
    """The non-final Chunk frame `seq` (no metadata) of the int, float, str or
    bool `data`, as ``_frames.chunk`` makes it, with `prefix` from
    `chunk_prefix`; None for any other item or a frame over `limit` bytes
    (``_frames.chunk`` then encodes it, or refuses it). A stream's small items
    spend most of their time here: no message object, no call per varint for
    the usual sizes, one join."""
    v: bytes | None
    if type(data) is int and -0x8000000000000000 <= data <= 0x7FFFFFFFFFFFFFFF:
        z = (data << 1) ^ (data >> 63)
        if z < 0x80:
            v = _INT_SMALL[z]
        elif z < 0x4000:
            v = bytes((0x18, (z & 0x7F) | 0x80, z >> 7))
        elif z < 0x200000:
            v = bytes((0x18, (z & 0x7F) | 0x80, ((z >> 7) & 0x7F) | 0x80, z >> 14))
        else:
            v = b"\x18" + varint(z)
    else:
        v = scalar_value_bytes(data)
        if v is None:
            return None
    if seq < 0x80:
        sq = _SEQ_SMALL[seq]
    elif seq < 0x4000:
        sq = bytes((0x08, (seq & 0x7F) | 0x80, seq >> 7))
    elif seq < 0x200000:
        sq = bytes((0x08, (seq & 0x7F) | 0x80, ((seq >> 7) & 0x7F) | 0x80, seq >> 14))
    else:
        sq = b"\x08" + varint(seq)
    lv = len(v)
    if lv < 0x80:
        lc = len(sq) + 2 + lv
        if lc < 0x80:
            n = len(prefix) + 1 + lc
            if n > limit:
                return None
            return b"".join((pack_len(n), prefix, SMALL_VARINTS[lc], sq, b"\x12", SMALL_VARINTS[lv], v))
    cb = sq + b"\x12" + varint(lv) + v
    lcb = varint(len(cb))
    n = len(prefix) + len(lcb) + len(cb)
    if n > limit:
        return None
    return pack_len(n) + prefix + lcb + cb


# The largest encoded item a run takes; a bigger one gets a frame of its own.
RUN_ITEM_MAX = 1024
# A run element: Chunk.run (field 5, length-delimited) around a Value.
_RUN_TAG = b"*"
# The run elements of small ints (Value field 3, zigzag varint under 0x80).
_RUN_INT_SMALL = [_RUN_TAG + b"\x02\x18" + v for v in SMALL_VARINTS]


def run_item(data: object) -> bytes | None:
    """The run element of the int, float, bool or short str `data`, None for
    any other item (it then gets a frame of its own)."""
    v: bytes | None
    if type(data) is int and -0x8000000000000000 <= data <= 0x7FFFFFFFFFFFFFFF:
        z = (data << 1) ^ (data >> 63)
        if z < 0x80:
            return _RUN_INT_SMALL[z]
        v = b"\x18" + varint(z)
    else:
        v = scalar_value_bytes(data)
        if v is None or len(v) > RUN_ITEM_MAX:
            return None
    lv = len(v)
    return _RUN_TAG + (SMALL_VARINTS[lv] if lv < 0x80 else varint(lv)) + v


def run_frame(prefix: bytes, seq: int, items: list[bytes]) -> bytes:
    """The Chunk frame carrying the run elements `items`, the first of them
    item `seq`, with `prefix` from `chunk_prefix`."""
    body = b"".join(items)
    if seq:
        body = b"\x08" + varint(seq) + body
    lc = varint(len(body))
    return pack_len(len(prefix) + len(lc) + len(body)) + prefix + lc + body


class Held:
    """The frames of one stream not written yet, and its run of small items
    not sealed into a frame yet."""

    __slots__ = (
        "frames",
        "refs",
        "size",
        "since",
        "lock",
        "armed",
        "done",
        "write",
        "writes",
        "seen",
        "deadline",
        "prefix",
        "run",
        "sealed",
        "run_seq",
    )

    def __init__(self, write: Callable[[Held, bool], bool], prefix: bytes = b"") -> None:
        self.frames: list[bytes] = []
        # The worker-arena regions the held frames name (host references
        # once they are written, given back if they never are).
        self.refs: list[int] = []
        self.size = 0
        # When the first held frame was added.
        self.since = 0.0
        self.lock = threading.Lock()
        # Whether the flusher watches this stream (under `lock`).
        self.armed = False
        # The stream ended: the flusher forgets it.
        self.done = False
        # Writes the frames (called under `lock`, with them non-empty):
        # `write(held, final)`; never raises to the flusher.
        self.write = write
        # Writes the stream made itself, and how many the flusher saw last.
        self.writes = 0
        self.seen = 0
        # When the flusher looks at this stream next.
        self.deadline = 0.0
        # The stream's `chunk_prefix`, for run frames.
        self.prefix = prefix
        # Run elements (see `run_item`): appended by the stream alone, without
        # the lock; run[:sealed] are in `frames` already; run[0] is item run_seq.
        self.run: list[bytes] = []
        self.sealed = 0
        self.run_seq = 0

    def seal(self) -> None:
        """Moves the run's items not sealed yet into a frame (under `lock`)."""
        s = self.sealed
        tail = self.run[s:]
        if tail:
            frame = run_frame(self.prefix, self.run_seq + s, tail)
            self.frames.append(frame)
            self.size += len(frame)
            self.sealed = s + len(tail)

    def restart_run(self, seq: int) -> None:
        """Empties the sealed run; its next item will be `seq` (under `lock`,
        by the stream only, after `seal`)."""
        self.run.clear()
        self.sealed = 0
        self.run_seq = seq

    def pending(self) -> bool:
        """Whether anything is held: frames, or run items not sealed."""
        return bool(self.frames) or len(self.run) > self.sealed

    def take(self) -> bytes:
        """The held frames (the run sealed first) as one buffer, and none
        held (under `lock`)."""
        self.seal()
        frames = self.frames
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        self.frames = []
        self.size = 0
        return data


class Flusher:
    """A thread writing the frames a stream has held for `BOUND_S` while its
    generator is busy elsewhere (blocked in ``next()``). Started on first use;
    one per worker.

    Each look costs the stream's thread a hand-over of the GIL, so while a
    stream keeps writing its batches itself the flusher looks only every
    `ACTIVE_TICK_S`: a generator that blocks right after a burst has its last
    chunks written within about two ticks; one that yields a few items and
    blocks, within `BOUND_S`."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.watched: list[Held] = []
        self.thread: threading.Thread | None = None
        # When the thread's wait ends (inf: it waits to be told).
        self.until = float("inf")

    def watch(self, held: Held) -> None:
        """Watch `held`, which just got its first frame (called under `held.lock`)."""
        held.armed = True
        held.seen = held.writes
        deadline = held.deadline = held.since + BOUND_S
        with self.cond:
            self.watched.append(held)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="snakepit-stream-flusher", daemon=True)
                self.thread.start()
            elif deadline < self.until:
                self.cond.notify()

    def _run(self) -> None:
        cond = self.cond
        while True:
            with cond:
                if not self.watched:
                    self.until = float("inf")
                    cond.wait()
                    continue
                due = min(h.deadline for h in self.watched)
                now = _clock()
                if due > now:
                    self.until = due
                    cond.wait(due - now)
                    continue
                self.until = now
                looked = [h for h in self.watched if h.deadline <= now]
                self.watched = [h for h in self.watched if h.deadline > now]
            again = []
            for held in looked:
                with held.lock:
                    # Cleared before looking at the run: the stream, appending
                    # without the lock, re-arms unless this look sees its item.
                    held.armed = False
                    if held.done:
                        continue
                    if now - held.since >= BOUND_S and held.pending():
                        held.write(held, False)
                    active = held.writes != held.seen
                    held.seen = held.writes
                    if not (active or held.pending()):
                        continue
                    held.armed = True
                    held.deadline = now + ACTIVE_TICK_S if active else held.since + BOUND_S
                    again.append(held)
            if again:
                with cond:
                    self.watched.extend(again)
