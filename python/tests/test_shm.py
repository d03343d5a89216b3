"""Shared-memory ndarrays and bytes (issue 16): the worker's side, against
real workers given two memfds as the host gives them (its arena read-only,
the worker's own read-write), with the test playing the host."""

from __future__ import annotations

import gc
import mmap
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from snakepit_bridge import _frames, _shm
from snakepit_bridge._codec import SharedMemoryExhausted, decode, encode
from snakepit_bridge._proto import snakepit_pb2 as pb
from shm_adapter import build_array
from wire_client import Shared, WorkerClient, start_worker

HOST = pb.SHARED_ARENA_HOST
WORKER = pb.SHARED_ARENA_WORKER
PAGE = 4096
DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
]
RECIPES = ["0d", "empty", "1d", "3d", "slice", "fortran", "bigendian"]


def _pass_values(obj: Any, out: pb.Value) -> None:
    if not isinstance(obj, pb.Value):
        raise TypeError(f"cannot encode {type(obj)}")
    out.CopyFrom(obj)


def wire(x: Any) -> pb.Value:
    """`x` encoded, any pb.Value inside it (a shared region) as it is."""
    return x if isinstance(x, pb.Value) else encode(x, on_unserializable=_pass_values)


class ShmHost:
    """The host's half: both arenas, a bump allocator in the host arena, and
    a worker speaking frames over a socketpair."""

    def __init__(self, size: int = 4 << 20, threshold: int = 1024, extra_args: tuple[str, ...] = ()) -> None:
        self.size = size
        self.hfd = os.memfd_create("snakepit-test-host", os.MFD_CLOEXEC)
        self.wfd = os.memfd_create("snakepit-test-worker", os.MFD_CLOEXEC)
        os.ftruncate(self.hfd, size)
        os.ftruncate(self.wfd, size)
        self.hmap = mmap.mmap(self.hfd, size)
        self.wmap = mmap.mmap(self.wfd, size, prot=mmap.PROT_READ)
        self.next = 0
        self.released: list[int] = []
        self.client: WorkerClient = start_worker(
            "shm_adapter.ShmAdapter",
            extra_fds=(self.hfd, self.wfd),
            extra_args=[
                "--shm-host-fd",
                str(self.hfd),
                "--shm-worker-fd",
                str(self.wfd),
                "--shm-bytes",
                str(size),
                "--shm-threshold",
                str(threshold),
                *extra_args,
            ],
        )

    def healthy(self) -> bool:
        return self.client.healthy()

    def close(self) -> None:
        self.client.close()
        self.hmap.close()
        self.wmap.close()
        os.close(self.hfd)
        os.close(self.wfd)

    # -------------------------------------------------------------- host arena

    def _place(self, data: bytes) -> int:
        off = self.next
        self.hmap[off : off + len(data)] = data
        self.next = off + max(PAGE, (len(data) + PAGE - 1) // PAGE * PAGE)
        return off

    def put(self, arr: np.ndarray) -> pb.Value:
        """An ndarray Value naming a copy of `arr` in the host arena."""
        a = np.array(arr, order="C")
        off = self._place(a.astype(a.dtype.newbyteorder("<")).tobytes())
        v = pb.Value()
        v.ndarray.dtype = a.dtype.name
        v.ndarray.shape.extend(a.shape)
        r = v.ndarray.shared
        r.arena, r.offset, r.length = HOST, off, a.nbytes
        return v

    def put_bytes(self, data: bytes) -> pb.Value:
        off = self._place(data)
        v = pb.Value()
        r = v.shared_bytes
        r.arena, r.offset, r.length = HOST, off, len(data)
        return v

    # ------------------------------------------------------------------ frames

    def recv(self, timeout: float = 5.0) -> pb.Frame:
        """The next frame that is not a ReleaseShared (those are noted)."""
        while True:
            f = self.client.recv(timeout)
            if f.WhichOneof("kind") == "release_shared":
                assert f.id == 0
                self.released.extend(f.release_shared.offsets)
                continue
            return f

    def execute(self, tool: str, *args: Any, stream: bool = False, window: int = 0, **kwargs: Any) -> int:
        c = self.client
        fid = c.new_id()
        c.send(
            _frames.execute(
                fid,
                tool,
                args=[wire(a) for a in args],
                kwargs={k: wire(v) for k, v in kwargs.items()},
                stream=stream,
                stream_window=window,
            )
        )
        return fid

    def execute_batch(self, tool: str, calls: list[pb.BatchCall]) -> int:
        """Sends one Execute carrying the batch `calls` (see `batch_call`)."""
        c = self.client
        fid = c.new_id()
        c.send(_frames.execute(fid, tool, batch=calls))
        return fid

    def reply(self, fid: int, timeout: float = 5.0) -> pb.Frame:
        f = self.recv(timeout)
        assert f.id == fid, f"expected a reply to {fid}, got {f}"
        return f

    def materialize(self, v: pb.Value, regions: list[pb.SharedRegion]) -> None:
        """Replaces the WORKER regions in `v` by their bytes (as the host
        reads them), noting each region."""
        k = v.WhichOneof("kind")
        if k == "ndarray" and v.ndarray.HasField("shared"):
            r = v.ndarray.shared
            assert r.arena == WORKER and r.offset % 1 == 0 and r.offset + r.length <= self.size
            regions.append(pb.SharedRegion(arena=r.arena, offset=r.offset, length=r.length))
            data = self.wmap[r.offset : r.offset + r.length]
            v.ndarray.ClearField("shared")
            v.ndarray.data = data
        elif k == "shared_bytes":
            r = v.shared_bytes
            assert r.arena == WORKER and r.offset + r.length <= self.size
            regions.append(pb.SharedRegion(arena=r.arena, offset=r.offset, length=r.length))
            v.bytes = self.wmap[r.offset : r.offset + r.length]
        elif k in ("list", "tuple", "set", "frozenset"):
            for item in getattr(v, k).items:
                self.materialize(item, regions)
        elif k == "map":
            for e in v.map.entries:
                self.materialize(e.key, regions)
                self.materialize(e.value, regions)

    def call_keep(self, tool: str, *args: Any, **kwargs: Any) -> tuple[Any, list[pb.SharedRegion]]:
        """Calls `tool`; returns its decoded result and the WORKER regions it
        named (still held: give them back with `release`)."""
        f = self.reply(self.execute(tool, *args, **kwargs))
        assert f.WhichOneof("kind") == "result", f
        regions: list[pb.SharedRegion] = []
        value = pb.Value()
        value.CopyFrom(f.result.value)
        self.materialize(value, regions)
        return decode(value), regions

    def release(self, offsets: list[int]) -> None:
        self.client.send(pb.Frame(id=0, release_shared=pb.ReleaseShared(offsets=offsets)))

    def call(self, tool: str, *args: Any, **kwargs: Any) -> Any:
        """Calls `tool` and gives back at once the regions its result named."""
        value, regions = self.call_keep(tool, *args, **kwargs)
        if regions:
            self.release([r.offset for r in regions])
        return value

    def wait_released(self, expected: list[int], timeout: float = 5.0) -> None:
        """Waits until the worker gave back exactly `expected` (in any order), then forgets them."""
        deadline = time.monotonic() + timeout
        while sorted(self.released) != sorted(expected):
            assert len(self.released) <= len(expected), f"released {self.released}, expected {expected}"
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"released {self.released}, expected {expected}")
            try:
                f = self.recv(timeout=min(left, 0.2))
            except TimeoutError:
                continue
            raise AssertionError(f"unexpected frame {f}")
        self.released.clear()

    def worker_stats(self) -> dict[str, Any]:
        s = self.call("stats")
        assert isinstance(s, dict)
        return s


def batch_call(*args: Any, **kwargs: Any) -> pb.BatchCall:
    """One call of a batch (its values as `wire` makes them)."""
    return pb.BatchCall(args=[wire(a) for a in args], kwargs={k: wire(v) for k, v in kwargs.items()})


@pytest.fixture
def shm_host() -> Iterator[ShmHost]:
    h = ShmHost(threshold=1)
    yield h
    h.close()


@pytest.fixture(scope="module")
def shared_hosts() -> Iterator[Shared[ShmHost]]:
    s = Shared(lambda: ShmHost(threshold=1))
    yield s
    s.close()


@pytest.fixture
def shared_host(shared_hosts: Shared[ShmHost]) -> ShmHost:
    """A host with a worker shared by a module's tests, replaced when a previous test left it broken."""
    return shared_hosts.live()


def expected_of(recipe: str, dtype: str) -> np.ndarray:
    a = build_array(recipe, dtype)
    return np.array(a, dtype=np.dtype(dtype), order="C")


# ---------------------------------------------------------------- worker arena


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_and_shape_crosses_through_the_worker_arena(shared_host: ShmHost, dtype: str) -> None:
    h = shared_host
    for recipe in RECIPES:
        expected = expected_of(recipe, dtype)
        got, regions = h.call_keep("build", recipe, dtype)
        assert isinstance(got, np.ndarray)
        assert got.dtype == np.dtype(dtype) and got.shape == expected.shape, recipe
        np.testing.assert_array_equal(got, expected, err_msg=recipe)
        if recipe == "empty":
            assert regions == []  # nothing to share: inline
        else:
            assert len(regions) == 1 and regions[0].length == expected.nbytes, recipe
            assert regions[0].offset % PAGE == 0
            h.release([r.offset for r in regions])
    s = h.worker_stats()
    assert s["allocations"] == 0 and s["in_use"] == 0 and s["host_references"] == 0


@pytest.mark.parametrize("dtype", ["bool", "int16", "uint64", "float16", "complex128"])
def test_host_arena_arrays_round_trip_and_come_back(shared_host: ShmHost, dtype: str) -> None:
    h = shared_host
    for recipe in ("0d", "1d", "3d", "fortran"):
        sent = expected_of(recipe, dtype)
        v = h.put(sent)
        got = h.call("echo", v)
        np.testing.assert_array_equal(got, sent)
        assert got.dtype == sent.dtype and got.shape == sent.shape
        h.wait_released([v.ndarray.shared.offset])
    assert h.worker_stats()["allocations"] == 0


def test_bytes_cross_through_the_worker_arena(shared_host: ShmHost) -> None:
    h = shared_host
    b = bytes(range(256)) * 19 + bytes(5000 % 256)
    for kind in ("bytes", "bytearray", "memoryview"):
        got, regions = h.call_keep("blob", 5000, kind)
        assert got == b
        assert len(regions) == 1 and regions[0].length == 5000
        h.release([regions[0].offset])
    got, regions = h.call_keep("blob", 5000, "strided")
    assert got == b[0::2] + b[0::2] and regions[0].length == 5000
    h.release([regions[0].offset])
    got, regions = h.call_keep("blob", 5000, "doubles")  # a 2-d memoryview of float64: its raw bytes
    assert got == b[:4992] and regions[0].length == 4992
    h.release([regions[0].offset])
    assert h.worker_stats()["allocations"] == 0


def test_below_the_threshold_values_stay_inline() -> None:
    h = ShmHost(threshold=64 * 1024)
    try:
        f = h.reply(h.execute("ones", 1000))
        nd = f.result.value.ndarray
        assert not nd.HasField("shared") and len(nd.data) == 8000
        f = h.reply(h.execute("blob", 1000))
        assert f.result.value.WhichOneof("kind") == "bytes"
        got, regions = h.call_keep("ones", 8192)  # exactly the threshold: shared
        assert len(regions) == 1 and got.sum() == 8192
        h.release([regions[0].offset])
        assert h.worker_stats()["allocations"] == 0
    finally:
        h.close()


def test_many_arrays_in_one_result(shared_host: ShmHost) -> None:
    h = shared_host
    got, regions = h.call_keep("many", 5, 3000)
    assert [int(a[0]) for a in got] == [0, 1, 2, 3, 4]
    assert len({r.offset for r in regions}) == 5
    assert h.worker_stats()["host_references"] == 5
    h.release([r.offset for r in regions])
    assert h.worker_stats()["allocations"] == 0


def test_stream_chunks_carry_shared_arrays(shared_host: ShmHost) -> None:
    h = shared_host
    fid = h.execute("arrays", 4, 5000, stream=True, window=8)
    offsets = []
    for i in range(4):
        f = h.reply(fid)
        regions: list[pb.SharedRegion] = []
        v = pb.Value()
        v.CopyFrom(f.chunk.value)
        h.materialize(v, regions)
        a = decode(v)
        assert a.dtype == np.float32 and a.shape == (5000,) and (a == i).all()
        offsets += [r.offset for r in regions]
    f = h.reply(fid)
    assert f.chunk.is_final and not f.chunk.HasField("value")
    assert len(offsets) == 4
    h.release(offsets)
    assert h.worker_stats()["allocations"] == 0


# ------------------------------------------------------------------ zero copy


def test_zero_copy_empty_crosses_without_a_copy(shared_host: ShmHost) -> None:
    h = shared_host
    got, regions = h.call_keep("make", 10000, "float32", 2.5)
    assert got.dtype == np.float32 and (got == 2.5).all()
    s = h.worker_stats()
    # One allocation: the buffer the tool filled is the one the host reads.
    assert s["allocations"] == 1 and s["host_references"] == 1 and s["in_use"] == 40960
    h.release([regions[0].offset])
    assert h.worker_stats()["allocations"] == 0

    got, regions = h.call_keep("make_ref", 3000)
    np.testing.assert_array_equal(got, np.arange(3000, dtype=np.int32))
    assert h.worker_stats()["allocations"] == 1
    h.release([regions[0].offset])

    # The same buffer three times (twice whole, once a slice): three references to one allocation.
    got, regions = h.call_keep("make_twice", 10000)
    assert [a.shape for a in got] == [(10000,), (10000,), (5000,)]
    assert regions[0].offset == regions[1].offset and regions[2].offset == regions[0].offset + 5000
    s = h.worker_stats()
    assert s["allocations"] == 1 and s["host_references"] == 3
    h.release([regions[0].offset, regions[2].offset])
    assert h.worker_stats()["host_references"] == 1
    h.release([regions[1].offset])
    assert h.worker_stats()["allocations"] == 0


def test_unknown_release_offsets_are_ignored(shm_host: ShmHost) -> None:
    h = shm_host
    got, regions = h.call_keep("ones", 1000)
    h.release([123456, regions[0].offset, regions[0].offset])  # one unknown, one too many
    assert h.call("echo", 5) == 5
    assert h.worker_stats()["allocations"] == 0
    h.client.sock.close()
    h.client.wait_exit()
    err = h.client.stderr_text()
    assert "ReleaseShared named 2 offset(s) of no held region of the worker arena (123456, 0); ignored" in err


# ----------------------------------------------------------------- host arena


def test_host_arrays_are_read_only_and_released_once_gone(shared_host: ShmHost) -> None:
    h = shared_host
    sent = np.arange(20000, dtype=np.float64)
    v = h.put(sent)
    info = h.call("info", v)
    assert info["type"] == "ndarray" and info["shared"] is True
    assert info["writeable"] is False and info["write"] == "ValueError" and info["copy_writeable"] is True
    assert info["sum"] == float(sent.sum())
    h.wait_released([v.ndarray.shared.offset])

    # Held by the tool: no release until it lets go.
    v2 = h.put(sent)
    assert h.call("hold", v2) == 1
    with pytest.raises(TimeoutError):
        h.recv(timeout=0.3)
    assert h.released == []
    assert h.call("drop") == 1
    h.wait_released([v2.ndarray.shared.offset])

    # One release per reference: the same region named twice.
    v3 = h.put(sent)
    got = h.call("echo", [v3, v3])
    assert len(got) == 2 and all((g == sent).all() for g in got)
    h.wait_released([v3.ndarray.shared.offset] * 2)


def test_host_bytes_are_copied_and_released_at_once(shared_host: ShmHost) -> None:
    h = shared_host
    data = os.urandom(10000)
    v = h.put_bytes(data)
    assert h.call("hold", v) >= 1
    h.wait_released([v.shared_bytes.offset])
    v2 = h.put_bytes(data)
    got = h.call("echo", v2)
    assert got == data
    h.wait_released([v2.shared_bytes.offset])
    h.call("drop")


def test_bad_regions_fail_the_request_only(shared_host: ShmHost) -> None:
    h = shared_host
    good = h.put(np.ones(1000))
    wrong_arena = pb.Value()
    wrong_arena.CopyFrom(good)
    wrong_arena.ndarray.shared.arena = WORKER
    out_of_bounds = pb.Value()
    out_of_bounds.CopyFrom(good)
    out_of_bounds.ndarray.shared.offset = h.size - 4096
    bad_length = pb.Value()
    bad_length.CopyFrom(h.put(np.ones(1000)))
    bad_length.ndarray.shared.length = 100
    for bad in (wrong_arena, out_of_bounds):
        f = h.reply(h.execute("echo", bad))
        assert f.WhichOneof("kind") == "error" and f.error.kind == pb.ERROR_KIND_ENCODING, f
        assert "arena" in f.error.message
    f = h.reply(h.execute("echo", bad_length))
    assert f.error.kind == pb.ERROR_KIND_ENCODING and "needs 8000" in f.error.message
    h.wait_released([bad_length.ndarray.shared.offset])

    # A good region before a bad one: decoded, then dropped with the failure.
    f = h.reply(h.execute("echo", [good, wrong_arena]))
    assert f.error.kind == pb.ERROR_KIND_ENCODING
    h.wait_released([good.ndarray.shared.offset])
    # A good region after the bad one: never decoded, given back all the same.
    good2 = h.put(np.ones(1000))
    f = h.reply(h.execute("info", [wrong_arena, good2]))
    assert f.error.kind == pb.ERROR_KIND_ENCODING
    h.wait_released([good2.ndarray.shared.offset])
    assert h.call("echo", 1) == 1


def test_requests_never_decoded_release_their_regions(shm_host: ShmHost) -> None:
    h = shm_host
    v = h.put(np.ones(5000))
    b = h.put_bytes(b"x" * 5000)
    f = h.reply(h.execute("no_such_tool", v, key={"k": [b]}))
    assert f.error.kind == pb.ERROR_KIND_UNKNOWN_TOOL
    h.wait_released([v.ndarray.shared.offset, b.shared_bytes.offset])

    # Bad arguments (unknown keyword) after decoding: the decoded arrays go.
    f = h.reply(h.execute("echo", v, nope=v))
    assert f.error.kind == pb.ERROR_KIND_BAD_ARGUMENTS
    h.wait_released([v.ndarray.shared.offset] * 2)

    # Cancelled while queued behind a slow request (process profile: one slot).
    slow = h.execute("slow", 0.5)
    queued = h.execute("echo", v)
    h.client.cancel(queued)
    f = h.recv()
    assert f.id == queued and f.error.kind == pb.ERROR_KIND_CANCELLED
    assert h.reply(slow).WhichOneof("kind") == "result"
    h.wait_released([v.ndarray.shared.offset])

    # Shutting down: an Execute that arrives then is refused and released.
    slow = h.execute("slow", 0.5)
    h.client.send(_frames.shutdown(0, grace_ms=2000))
    late = h.execute("echo", v)
    f = h.recv()
    assert f.id == late and f.error.kind == pb.ERROR_KIND_SHUTTING_DOWN
    h.wait_released([v.ndarray.shared.offset])
    assert h.reply(slow).WhichOneof("kind") == "result"


def test_a_batch_gives_back_the_regions_of_every_call(shm_host: ShmHost) -> None:
    h = shm_host
    a, b, after_bad, positional = (h.put(np.full(1000, i, dtype=np.float64)) for i in (1, 2, 3, 4))
    bad = pb.Value()
    bad.CopyFrom(h.put(np.ones(1000)))
    bad.ndarray.shared.length = 100
    calls = [batch_call(x=a), batch_call(x=[bad, after_bad]), batch_call(positional), batch_call(x=b)]
    f = h.reply(h.execute_batch("sums", calls))
    items = f.result.items
    assert [decode(items[i].value) for i in (0, 3)] == [1000.0, 2000.0]
    assert items[1].error.kind == pb.ERROR_KIND_ENCODING and "needs 8000" in items[1].error.message
    assert items[2].error.kind == pb.ERROR_KIND_BAD_ARGUMENTS
    # Decoded (and dropped after the run), failed, never reached, never decoded.
    h.wait_released([r.ndarray.shared.offset for r in (a, b, bad, after_bad, positional)])

    # A batch refused before decoding (the tool is not batched) gives its regions back.
    f = h.reply(h.execute_batch("echo", [batch_call(x=a), batch_call(x=b)]))
    assert f.error.kind == pb.ERROR_KIND_BAD_ARGUMENTS and "not batched" in f.error.message
    h.wait_released([a.ndarray.shared.offset, b.ndarray.shared.offset])

    # So does a batch cancelled while queued behind a slow request (one slot).
    slow = h.execute("slow", 0.5)
    queued = h.execute_batch("sums", [batch_call(x=a), batch_call(x=b)])
    h.client.cancel(queued)
    f = h.recv()
    assert f.id == queued and f.error.kind == pb.ERROR_KIND_CANCELLED
    assert h.reply(slow).WhichOneof("kind") == "result"
    h.wait_released([a.ndarray.shared.offset, b.ndarray.shared.offset])


def test_a_stacked_batch_answers_with_rows_of_one_shared_array(shm_host: ShmHost) -> None:
    h = shm_host
    xs = [h.put(np.full(1000, i, dtype=np.float32)) for i in range(3)]
    f = h.reply(h.execute_batch("doubled", [batch_call(x=x) for x in xs]))
    assert f.WhichOneof("kind") == "result", f
    regions: list[pb.SharedRegion] = []
    rows = []
    for item in f.result.items:
        v = pb.Value()
        v.CopyFrom(item.value)
        h.materialize(v, regions)
        rows.append(decode(v))
    assert [(r.dtype, r.shape, float(r[0])) for r in rows] == [(np.float32, (1000,), 2.0 * i) for i in range(3)]
    # Three rows of the one array the tool made: three references to one allocation.
    assert [r.offset - regions[0].offset for r in regions] == [0, 4000, 8000]
    h.wait_released([x.ndarray.shared.offset for x in xs])
    s = h.worker_stats()
    assert s["allocations"] == 1 and s["host_references"] == 3
    h.release([r.offset for r in regions])
    assert h.worker_stats()["allocations"] == 0


def test_host_call_arguments_and_answers_use_shared_memory(shm_host: ShmHost) -> None:
    h = shm_host
    fid = h.execute("ask_host", "double", np.arange(5000.0))
    call = h.recv()
    assert call.WhichOneof("kind") == "host_call"
    regions: list[pb.SharedRegion] = []
    arg = pb.Value()
    arg.CopyFrom(call.host_call.args[0])
    h.materialize(arg, regions)
    assert len(regions) == 1  # the argument went through the worker arena
    sent = decode(arg)
    answer_value = h.put(sent * 2)
    h.client.send(pb.Frame(id=call.id, host_call_result=pb.HostCallResult(value=answer_value)))
    f = h.reply(fid)
    assert decode(f.result.value) == {"sum": float(np.arange(5000.0).sum() * 2), "writeable": False, "shared": True}
    h.wait_released([answer_value.ndarray.shared.offset])
    h.release([regions[0].offset])

    # An answer that comes after the call gave up is never decoded: released all the same.
    fid = h.execute("ask_host", "never", 1, timeout=0.2)
    call = h.recv()
    assert h.reply(fid).error.python_type == "HostCallTimeout"
    late = h.put(np.ones(3000))
    h.client.send(pb.Frame(id=call.id, host_call_result=pb.HostCallResult(value=late)))
    h.wait_released([late.ndarray.shared.offset])
    assert h.worker_stats()["allocations"] == 0


def test_a_cancelled_stream_gives_back_a_chunk_it_did_not_send(shm_host: ShmHost) -> None:
    h = shm_host
    fid = h.execute("arrays", 3, 5000, stream=True, window=1)
    first = h.reply(fid)
    h.client.cancel(fid)
    f = h.reply(fid)
    assert f.error.kind == pb.ERROR_KIND_CANCELLED
    regions: list[pb.SharedRegion] = []
    v = pb.Value()
    v.CopyFrom(first.chunk.value)
    h.materialize(v, regions)
    h.release([r.offset for r in regions])
    deadline = time.monotonic() + 5
    while (s := h.worker_stats())["allocations"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert s["allocations"] == 0 and s["host_references"] == 0


def test_ffi_calls_use_shared_memory(shm_host: ShmHost) -> None:
    h = shm_host
    got, regions = h.call_keep("snakepit.ffi.call", "numpy", "ones", 8192)
    assert got.shape == (8192,) and got.sum() == 8192 and len(regions) == 1
    h.release([regions[0].offset])
    v = h.put(np.arange(10000.0))
    assert h.call("snakepit.ffi.call", "numpy", "sum", v) == float(np.arange(10000.0).sum())
    h.wait_released([v.ndarray.shared.offset])
    assert h.worker_stats()["allocations"] == 0


# ------------------------------------------------------------ arena exhausted


def test_a_full_arena_is_a_typed_error_and_the_worker_serves_on() -> None:
    h = ShmHost(size=1 << 20, threshold=1024)
    try:
        f = h.reply(h.execute("ones", 200_000))  # 1.6 MB > 1 MiB arena
        assert f.WhichOneof("kind") == "error", f
        e = f.error
        assert e.kind == pb.ERROR_KIND_SHARED_MEMORY_EXHAUSTED
        assert e.details["requested"] == "1600000" and e.details["capacity"] == str(1 << 20)
        assert e.details["in_use"] == "0"
        # Part of a result fitted: what was allocated is given back.
        f = h.reply(h.execute("many", 4, 40_000))  # 4 x 320000 bytes
        assert f.error.kind == pb.ERROR_KIND_SHARED_MEMORY_EXHAUSTED
        assert int(f.error.details["in_use"]) == 3 * 323584
        assert h.worker_stats()["allocations"] == 0
        # zero_copy.empty raises it to the tool.
        f = h.reply(h.execute("make", 200_000))
        assert f.error.kind == pb.ERROR_KIND_SHARED_MEMORY_EXHAUSTED
        # Held by the host: the arena fills, and frees as the host gives back.
        kept = []
        for _ in range(3):
            _, regions = h.call_keep("ones", 40_000)
            kept += [r.offset for r in regions]
        f = h.reply(h.execute("ones", 40_000))
        assert f.error.kind == pb.ERROR_KIND_SHARED_MEMORY_EXHAUSTED
        h.release(kept)
        got = h.call("ones", 40_000)
        assert got.sum() == 40_000
        assert h.worker_stats()["allocations"] == 0
    finally:
        h.close()


# --------------------------------------------------------------- shm off / on


def test_without_shared_memory_everything_is_inline(spawn: Any) -> None:
    c = spawn("shm_adapter.ShmAdapter")
    assert c.call("enabled") is False
    assert c.call("stats") == {"enabled": False}
    f = c.call_frame("ones", 100_000)
    assert len(f.result.value.ndarray.data) == 800_000
    got = c.call("make", 1000, "float32", 3.0)
    assert got.dtype == np.float32 and (got == 3.0).all()
    assert c.call("blob", 100_000) == bytes(range(256)) * 390 + bytes(100_000 % 256)


def test_thread_profile() -> None:
    h = ShmHost(size=1 << 20, threshold=1024, extra_args=("--profile", "thread", "--threads", "4"))
    try:
        assert h.client.hello is not None and h.client.hello.hello.profile == "thread"
        n = 40
        fids = [h.execute("echo", h.put(np.full(3000, i))) for i in range(n)]
        offsets = []
        got = {}
        for _ in fids:
            f = h.recv()
            regions: list[pb.SharedRegion] = []
            v = pb.Value()
            v.CopyFrom(f.result.value)
            h.materialize(v, regions)
            got[f.id] = decode(v)
            offsets += [r.offset for r in regions]
        assert [int(got[fid][0]) for fid in fids] == list(range(n))
        h.release(offsets)
        deadline = time.monotonic() + 5
        while len(h.released) < n and time.monotonic() < deadline:
            try:
                h.recv(timeout=0.1)
            except TimeoutError:
                pass
        assert len(h.released) == n
        assert h.worker_stats()["allocations"] == 0
    finally:
        h.close()


def test_an_arena_smaller_than_shm_bytes_is_a_startup_failure() -> None:
    fd = os.memfd_create("snakepit-test-small", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, PAGE)
        c = start_worker(
            "shm_adapter.ShmAdapter",
            extra_fds=(fd,),
            extra_args=["--shm-host-fd", str(fd), "--shm-worker-fd", str(fd), "--shm-bytes", str(1 << 20)],
            read_hello=False,
        )
        try:
            f = c.recv()
            assert f.WhichOneof("kind") == "error" and f.error.kind == pb.ERROR_KIND_STARTUP_FAILED
            assert "fewer than --shm-bytes" in f.error.message
            assert c.wait_exit() == 3
        finally:
            c.close()
    finally:
        os.close(fd)


def test_partial_shm_flags_are_refused() -> None:
    c = start_worker("shm_adapter.ShmAdapter", extra_args=["--shm-host-fd", "4"], read_hello=False)
    try:
        assert c.wait_exit() == 2
        assert "go together" in c.stderr_text()
    finally:
        c.close()


# ------------------------------------------------------------- the allocator


def test_allocator_first_fit_coalescing_and_counts() -> None:
    fd = os.memfd_create("snakepit-test-alloc", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, 64 * PAGE)
        a = _shm.WorkerArena(fd, 64 * PAGE)
        x = a.alloc(1, 1, 0)
        y = a.alloc(PAGE + 1, 1, 0)
        z = a.alloc(3 * PAGE, 1, 0)
        assert (x, y, z) == (0, PAGE, 3 * PAGE)
        a.release_host([y + 100])  # an offset inside y
        assert a.alloc(PAGE, 1, 0) == PAGE  # first fit: y's old place
        assert a.alloc(PAGE, 1, 0) == 2 * PAGE
        a.release_host([x, PAGE, 2 * PAGE, z])
        assert a.free == [[0, 64 * PAGE]] and a.in_use == 0  # all coalesced
        with pytest.raises(SharedMemoryExhausted) as ei:
            a.alloc(65 * PAGE, 1, 0)
        assert ei.value.requested == 65 * PAGE and ei.value.capacity == 64 * PAGE
        # Host references and local owners both hold an allocation.
        w = a.alloc(10, 1, 1)
        a.release_host([w])
        assert a.stats()["allocations"] == 1
        a.drops.append(w)
        assert a.stats()["allocations"] == 0
        big = a.alloc(64 * PAGE, 1, 0)
        assert big == 0
        a.release_host([big])
    finally:
        del a
        gc.collect()
        os.close(fd)


def test_cpu_torch_tensors_encode_as_their_ndarray(monkeypatch: pytest.MonkeyPatch) -> None:
    """With torch imported, a CPU tensor crosses as the ndarray it shares
    memory with (a stand-in module here: torch is optional)."""
    import types

    class Tensor:
        def __init__(self, a: np.ndarray, device: str = "cpu") -> None:
            self.a = a
            self.device = types.SimpleNamespace(type=device)

        def detach(self) -> Tensor:
            return self

        def resolve_conj(self) -> Tensor:
            return self

        def resolve_neg(self) -> Tensor:
            return self

        def numpy(self) -> np.ndarray:
            return self.a

    fake = types.ModuleType("torch")
    fake.Tensor = Tensor  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "torch", fake)
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = decode(encode(Tensor(a)))
    assert got.dtype == np.float32 and got.shape == (3, 4) and (got == a).all()
    with pytest.raises(Exception, match="cannot encode"):
        encode(Tensor(a, device="cuda"))
