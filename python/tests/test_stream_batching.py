"""Chunks batched into one write: order, credits, cancellation, errors, and
a paused generator's chunks delivered without waiting for the batch.

No assertion depends on timing: a paused generator waits for a file the test
creates only after it has received the chunks made before the pause."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from snakepit_bridge._codec import decode
from snakepit_bridge._proto import snakepit_pb2 as pb
from snakepit_bridge._request import Request
from snakepit_bridge._runner import Runner
from snakepit_bridge._stream_batch import Flusher
from snakepit_bridge._wire import unpack_len
from wire_client import Shared, WorkerClient, start_worker

ADAPTER = "stream_batch_adapter.StreamBatchAdapter"


@pytest.fixture(scope="module", params=["process", "thread"])
def shared_worker(request: pytest.FixtureRequest) -> Iterator[Shared[WorkerClient]]:
    extra = ["--profile", "thread", "--threads", "4"] if request.param == "thread" else []
    s = Shared(lambda: start_worker(ADAPTER, extra_args=extra))
    yield s
    s.close()


@pytest.fixture
def worker(shared_worker: Shared[WorkerClient]) -> WorkerClient:
    return shared_worker.live()


def chunks_of(c: WorkerClient, fid: int, count: int) -> list[pb.Chunk]:
    out = []
    for _ in range(count):
        f = c.reply(fid)
        assert f.WhichOneof("kind") == "chunk", f
        out.append(f.chunk)
    return out


def test_many_small_chunks_arrive_in_order(worker: WorkerClient) -> None:
    n = 20000
    fid = worker.execute("ints", n=n, stream=True, window=1 << 20)
    chunks = chunks_of(worker, fid, n + 1)
    assert [c.seq for c in chunks] == list(range(n + 1))
    assert [decode(c.value) for c in chunks[:n]] == list(range(n))
    assert not any(c.is_final for c in chunks[:n])
    assert chunks[n].is_final and not chunks[n].HasField("value")
    worker.recv_nothing(0.05)


def test_concurrent_streams_each_keep_their_order(worker: WorkerClient) -> None:
    # Thread profile: both run at once, their batches interleave on the socket.
    n = 5000
    fids = [worker.execute("ints", n=n, stream=True, window=1 << 20) for _ in range(2)]
    seqs: dict[int, list[int]] = {fid: [] for fid in fids}
    closed = set()
    while len(closed) < 2:
        f = worker.recv()
        assert f.WhichOneof("kind") == "chunk" and f.id in seqs, f
        seqs[f.id].append(f.chunk.seq)
        if f.chunk.is_final:
            closed.add(f.id)
    for fid in fids:
        assert seqs[fid] == list(range(n + 1))


def test_final_chunk_ends_a_batch(worker: WorkerClient) -> None:
    fid = worker.execute("ends_final", n=500, stream=True, window=1000)
    chunks = chunks_of(worker, fid, 500)
    assert [decode(c.value) for c in chunks] == list(range(500))
    assert chunks[-1].is_final and not any(c.is_final for c in chunks[:-1])
    worker.recv_nothing(0.1)  # no closing chunk after a final one


def test_every_chunk_takes_a_credit(worker: WorkerClient) -> None:
    # The generator is never slower than the window: the held chunks go out
    # when the credits run out, and not one more is made.
    fid = worker.execute("tagged", tag="credits", stream=True, window=50)
    assert [c.seq for c in chunks_of(worker, fid, 50)] == list(range(50))
    worker.recv_nothing(0.2)
    seq = 50
    for extra in (1, 7, 100):
        worker.credit(fid, extra)
        assert [c.seq for c in chunks_of(worker, fid, extra)] == list(range(seq, seq + extra))
        seq += extra
        worker.recv_nothing(0.1)
    worker.cancel(fid)
    assert worker.reply(fid).error.kind == pb.ERROR_KIND_CANCELLED


def test_cancel_stops_a_batched_stream(worker: WorkerClient) -> None:
    tag = f"cancel-{time.monotonic_ns()}"
    fid = worker.execute("tagged", tag=tag, stream=True, window=1 << 20)
    first = chunks_of(worker, fid, 100)
    assert [c.seq for c in first] == list(range(100))
    worker.cancel(fid, reason="enough")
    # Chunks written before the cancel was read may still come, in order; then the error, then nothing.
    seq = 100
    while True:
        f = worker.reply(fid)
        if f.WhichOneof("kind") == "error":
            assert f.error.kind == pb.ERROR_KIND_CANCELLED and "enough" in f.error.message
            break
        assert f.chunk.seq == seq
        seq += 1
    worker.recv_nothing(0.2)
    deadline = time.monotonic() + 5
    while tag not in worker.call("closed"):
        assert time.monotonic() < deadline, "GeneratorExit never reached the generator"
        time.sleep(0.01)


def test_chunks_made_before_an_error_come_before_it(worker: WorkerClient) -> None:
    fid = worker.execute("fails_after", n=300, stream=True, window=1000)
    chunks = chunks_of(worker, fid, 300)
    assert [decode(c.value) for c in chunks] == list(range(300))
    e = worker.reply(fid).error
    assert e.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and "failed after 300" in e.message


@pytest.mark.parametrize("tool", ["pairs", "async_pairs"])
def test_a_paused_generator_chunks_are_not_held(worker: WorkerClient, tool: str, tmp_path: Path) -> None:
    # Each step yields two items at once, then waits for the test, which
    # releases the step only once it got both chunks: they cannot have been
    # written for the batch's size, a final chunk or a lack of credits.
    steps = 5
    fid = worker.execute(tool, gate=str(tmp_path), steps=steps, stream=True, window=1000)
    for step in range(steps):
        got = chunks_of(worker, fid, 2)
        assert [decode(c.value) for c in got] == [2 * step, 2 * step + 1]
        assert [c.seq for c in got] == [2 * step, 2 * step + 1]
        (tmp_path / str(step)).touch()
    closing = worker.reply(fid).chunk
    assert closing.is_final and closing.seq == 2 * steps


def test_small_items_travel_as_runs(worker: WorkerClient) -> None:
    n = 5000
    fid = worker.execute("ints", n, stream=True, window=n + 1)
    frames, items = 0, []
    while True:
        f = worker.recv_raw()
        assert f.id == fid and f.WhichOneof("kind") == "chunk", f
        c = f.chunk
        frames += 1
        if c.run:
            assert not c.is_final and not c.HasField("value") and not c.metadata
            assert c.seq == len(items)
            items.extend(decode(v) for v in c.run)
        elif c.is_final:
            assert c.seq == n and not c.HasField("value")
            break
        else:
            assert c.seq == len(items)
            items.append(decode(c.value))
    assert items == list(range(n))
    # A few frames, not one per item (how few depends on the batch bound).
    assert frames < n // 10


def test_runs_keep_order_around_items_with_frames_of_their_own(worker: WorkerClient) -> None:
    rounds = 40
    fid = worker.execute("mixed", rounds, stream=True, window=1000)
    expected: list[tuple[object, dict[str, object]]] = []
    for r in range(rounds):
        expected += [(v, {}) for v in (r, -r * 1000003, r / 3, r % 2 == 0, f"s{r}", "x" * 3000, {"round": r})]
        expected.append((r, {"round": r}))
    got = []
    for seq in range(len(expected) + 1):
        c = worker.reply(fid).chunk
        assert c.seq == seq
        got.append((decode(c.value), {k: decode(v) for k, v in c.metadata.items()}))
        if seq == len(expected):
            assert c.is_final and got[-1][0] == "end"
    assert got[:-1] == expected
    worker.recv_nothing(0.1)


def test_run_frames_are_what_protobuf_makes() -> None:
    from snakepit_bridge._codec import encode
    from snakepit_bridge._stream_batch import chunk_prefix, run_frame, run_item

    items = [0, 1, -1, 63, 64, -65, 2**40, -(2**63), 2**63 - 1, 1.5, True, False, "", "héllo", "z" * 1000]
    for fid in (1, 300, 2**40):
        for seq in (0, 1, 127, 128, 2**21):
            made = run_frame(chunk_prefix(fid), seq, [run_item(v) for v in items])
            want = pb.Frame(id=fid, chunk=pb.Chunk(seq=seq, run=[encode(v) for v in items])).SerializeToString()
            (n,) = unpack_len(made, 0)
            assert n == len(made) - 4 and made[4:] == want
    # Items a run does not take: they get frames of their own.
    for v in (2**63, "z" * 1100, b"bytes", None, [1], {"a": 1}):
        assert run_item(v) is None


def test_scalar_chunks_are_the_frames_the_codec_makes() -> None:
    from snakepit_bridge._frames import chunk as chunk_frame
    from snakepit_bridge._stream_batch import chunk_prefix, scalar_chunk

    values = [0, 1, -1, 63, 64, -64, -65, 127, 128, 2**31, -(2**31), 2**63 - 1, -(2**63)]
    values += [0.0, -2.5, float("inf"), "", "x", "é" * 100, "y" * 300, "a" * 120, "a" * 125, "a" * 126, True, False]
    values += list(range(-300, 300)) + [8191, 8192, 2**20 - 1, 2**20, 2**21]
    for fid in (1, 127, 128, 2**40):
        prefix = chunk_prefix(fid)
        for seq in (0, 1, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**35):
            for v in values:
                assert scalar_chunk(prefix, seq, v, 1 << 20) == chunk_frame(fid, seq, v, True, False, None, 1 << 20)
    prefix = chunk_prefix(1)
    # Not scalars, or too large: left to the codec.
    for v in (2**63, -(2**63) - 1, None, b"x", [1], {"a": 1}, 1j):
        assert scalar_chunk(prefix, 0, v, 1 << 20) is None
    assert scalar_chunk(prefix, 0, "z" * 100, 50) is None


class _Sink:
    """A socket that keeps what is written, for the in-process tests."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lock = threading.Lock()

    def sendall(self, b: bytes) -> None:
        with self.lock:
            self.data += b

    def seqs(self) -> list[int]:
        with self.lock:
            data = bytes(self.data)
        out, pos = [], 0
        while pos + 4 <= len(data):
            (n,) = unpack_len(data, pos)
            c = pb.Frame.FromString(data[pos + 4 : pos + 4 + n]).chunk
            out.extend(range(c.seq, c.seq + len(c.run)) if c.run else [c.seq])
            pos += 4 + n
        return out


def _runner_without_flusher(monkeypatch: pytest.MonkeyPatch) -> tuple[Runner, _Sink]:
    """A Runner with just what `_stream` uses, whose flusher never writes:
    what reaches the socket was written by the stream itself."""
    monkeypatch.setattr(Flusher, "watch", lambda self, held: setattr(held, "armed", True))
    r = Runner.__new__(Runner)
    sink = _Sink()
    r.limit, r.sock, r.wlock, r.registry = 1 << 20, sink, threading.Lock(), {}
    r.flusher, r.held, r.shm, r.unserializable = Flusher(), {}, False, "error"
    return r, sink


def _eventually(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.001)


def _request(fid: int, credits: int) -> Request:
    st = Request(fid, pb.Execute(tool="t", stream=True))
    st.cond = threading.Condition()
    st.credits = credits
    return st


def test_held_chunks_go_out_before_waiting_for_credits(monkeypatch: pytest.MonkeyPatch) -> None:
    r, sink = _runner_without_flusher(monkeypatch)
    st = _request(1, 3)
    r.registry[1] = st
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(r._stream(st, iter_gen(5), asyncio.new_event_loop())), daemon=True)
    t.start()
    # Three credits: three chunks, written although nothing else made them go.
    _eventually(lambda: sink.seqs() == [0, 1, 2])
    with st.cond:
        st.credits += 2
        st.cond.notify_all()
    t.join(10)
    assert done == [5] and sink.seqs() == [0, 1, 2, 3, 4]


def test_held_chunks_go_out_when_an_async_generator_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    r, sink = _runner_without_flusher(monkeypatch)
    st = _request(2, 100)
    r.registry[2] = st
    go = threading.Event()

    async def agen():
        yield 0
        yield 1
        while not go.is_set():
            await asyncio.sleep(0.001)
        yield 2

    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(r._stream(st, agen(), asyncio.new_event_loop())), daemon=True)
    t.start()
    _eventually(lambda: sink.seqs() == [0, 1])
    go.set()
    t.join(10)
    assert done == [3] and sink.seqs() == [0, 1, 2]


def iter_gen(n: int):
    yield from range(n)
