"""Hostile bytes into a real worker: garbage frame bodies, truncated frames,
Execute frames with garbage values, and frames of every kind with random
ids. After each, a Ping must be answered by the same process; at the end a
normal call must be.

One worker serves every example (a few hundred frames), so the run is short.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from snakepit_bridge import _frames
from snakepit_bridge._codec import encode
from snakepit_bridge._proto import snakepit_pb2 as pb
from wire_client import Shared, WorkerClient, field, start_worker, varint

# Ids of the Pings the test sends, out of the range the random frames use.
_PING_BASE = 1 << 60
_RANDOM_ID = st.integers(min_value=0, max_value=2**40)
FUZZ = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def shared_worker() -> Iterator[Shared[WorkerClient]]:
    s = Shared(lambda: start_worker(extra_args=["--max-frame-bytes", "65536"]))
    yield s
    s.close()


@pytest.fixture
def worker(shared_worker: Shared[WorkerClient]) -> WorkerClient:
    return shared_worker.live()


_pings = iter(range(_PING_BASE, _PING_BASE + 1_000_000))


def still_serving(c: WorkerClient) -> None:
    """A Ping sent now is answered (whatever else the worker said first)."""
    pid = c.hello.hello.pid if c.hello is not None else 0
    ping_id = next(_pings)
    c.send(_frames.ping(ping_id))
    while True:
        f = c.recv(timeout=5)
        if f.id == ping_id:
            assert f.WhichOneof("kind") == "pong"
            break
    assert c.proc.poll() is None and c.proc.pid == pid


def send_body(c: WorkerClient, body: bytes) -> None:
    assume(not _is_shutdown(body))
    c.send_body(body)


def _is_shutdown(body: bytes) -> bool:
    """Whether protobuf reads `body` as a Shutdown (which ends the worker, as it should)."""
    try:
        return pb.Frame.FromString(body).WhichOneof("kind") == "shutdown"
    except Exception:
        return False


_HOST_KINDS = [
    f.name
    for f in pb.Frame.DESCRIPTOR.oneofs_by_name["kind"].fields
    if f.name != "shutdown"  # a well-formed Shutdown does end the worker
]
_plain_values = st.recursive(
    st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=8), st.binary(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=4), children, max_size=3)),
    max_leaves=8,
)


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    what = draw(st.sampled_from(["garbage", "truncated", "garbage_value", "kind", "kind_garbage"]))
    fid = draw(_RANDOM_ID)
    if what == "garbage":
        return draw(st.binary(max_size=256))
    if what == "truncated":
        body = _frames.execute(fid, "echo", args=[encode(draw(_plain_values))]).SerializeToString()
        return body[: draw(st.integers(min_value=0, max_value=max(0, len(body) - 1)))]
    if what == "garbage_value":
        # An Execute of a real tool whose argument Value is random bytes.
        value = draw(st.binary(max_size=128))
        ex = field(1, b"echo") + field(3, value)
        return b"\x08" + varint(fid) + field(10, ex)
    kind = draw(st.sampled_from(_HOST_KINDS))
    number = pb.Frame.DESCRIPTOR.fields_by_name[kind].number
    payload = draw(st.binary(max_size=64)) if what == "kind_garbage" else b""
    return b"\x08" + varint(fid) + field(number, payload)


@FUZZ
@given(body=hostile_bodies())
def test_hostile_frames_never_end_the_worker(worker: WorkerClient, body: bytes) -> None:
    send_body(worker, body)
    still_serving(worker)


def test_worker_serves_after_the_fuzzing(worker: WorkerClient) -> None:
    still_serving(worker)
    fid = worker.execute("echo", message="after the storm")
    while True:
        f = worker.recv(timeout=5)
        if f.id == fid:
            break
    assert f.WhichOneof("kind") == "result" and f.result.value.str == "after the storm"
