"""Tools, sessions, status and errors through a real ``snakepit serve``."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest
from conftest import Serve, wait_for

import snakepit_client as sp

pytestmark = pytest.mark.server


def test_execute_returns_the_value_with_its_type(client: sp.Client) -> None:
    assert client.execute("add", a=2, b=3) == 5
    assert client.execute("add", a=2.5, b=0.25) == 2.75
    assert client.execute("echo", message="héllo") == "héllo"
    assert client.execute("random_bytes", n=4) == b"\x00\x01\x02\x03"
    assert client.execute("noop") is None
    assert client.execute("add", a=2**70, b=1, pool="default", timeout=10, idempotent=True) == 2**70 + 1


def test_arguments_arrive_in_python_with_their_types(client: sp.Client) -> None:
    for value, type_name in [
        ((1, 2**70), "tuple"),
        (frozenset({1, 2}), "frozenset"),
        ({1, 2, 3}, "set"),
        (b"\x00\xff", "bytes"),
        (3 + 4j, "complex"),
        ({(1, 2): "tuple key"}, "dict"),
    ]:
        described = client.execute("describe", value=value)
        assert described == {"type": type_name, "repr": repr(value)}


def test_a_numpy_array_comes_back_as_a_numpy_array(client: sp.Client) -> None:
    np = pytest.importorskip("numpy")
    m = client.execute("matrix", rows=2, cols=3)
    assert isinstance(m, np.ndarray)
    assert (m.dtype, m.shape) == (np.float64, (2, 3))
    assert m.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert client.execute("describe", value=np.arange(3, dtype=np.int16))["type"] == "ndarray"


def test_a_tool_stream_yields_its_items_in_order(client: sp.Client) -> None:
    items = list(client.stream("progress", steps=3, delay_ms=0))
    assert [i["step"] for i in items] == [1, 2, 3]
    assert items[-1] == {"step": 3, "total": 3, "percent": 100.0}


def test_a_python_exception_keeps_its_type_message_and_traceback(client: sp.Client) -> None:
    with pytest.raises(sp.PythonError) as err:
        client.execute("fail", message="boom")
    e = err.value
    assert (e.kind, e.python_type, e.code) == ("python_exception", "ValueError", grpc.StatusCode.UNKNOWN)
    assert e.message == "boom" and str(e) == "python_exception: ValueError: boom"
    assert "raise ValueError(message)" in e.traceback


def test_an_unknown_tool_a_bad_argument_and_an_unknown_pool(client: sp.Client) -> None:
    with pytest.raises(sp.UnknownToolError) as unknown:
        client.execute("no_such_tool")
    assert (unknown.value.kind, unknown.value.code) == ("unknown_tool", grpc.StatusCode.NOT_FOUND)
    with pytest.raises(sp.BadArgumentsError) as bad:
        client.execute("add", a="two", b=3)
    assert (bad.value.kind, bad.value.parameter, bad.value.code) == (
        "bad_arguments",
        "a",
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    with pytest.raises(sp.NotFoundError) as pool:
        client.execute("add", pool="nowhere", a=1, b=2)
    assert pool.value.kind == "unknown_pool"


def test_a_value_that_cannot_be_sent_fails_before_sending(client: sp.Client) -> None:
    with pytest.raises(sp.EncodingError, match=r"lone surrogate .* at message"):
        client.execute("echo", message="caf\udce9")
    with pytest.raises(sp.EncodingError, match="cannot send an object of type"):
        client.execute("describe", value=object())


def test_status_lists_pools_workers_and_tools(client: sp.Client) -> None:
    status = client.status()
    assert set(status) == {"default", "test"}
    default = status["default"]
    assert (default["size"], default["workers_up"], default["degraded"]) == (2, 2, False)
    assert len(default["workers"]) == 2
    assert all(w["pid"] > 0 and w["ready"] for w in default["workers"])
    tools = {t["name"]: t for t in default["tools"]}
    assert tools["progress"]["supports_streaming"] is True
    steps = next(p for p in tools["progress"]["parameters"] if p["name"] == "steps")
    assert (steps["type"], steps["required"], steps["default_value"]) == ("int", False, 10)
    assert list(client.status("test")) == ["test"]


def test_strict_affinity_keeps_state_across_calls(client: sp.Client) -> None:
    with client.session(affinity="strict_queue") as s:
        assert [s.execute("tally") for _ in range(3)] == [1, 2, 3]
        assert s.execute("tally", n=10) == 13
        info = s.info()
        assert (info["id"], info["affinity"]) == (s.id, "strict_queue")
        assert info["created_unix_ms"] > 0
    # Released on leaving the block: the server no longer knows it.
    with pytest.raises(sp.SessionNotFoundError) as gone:
        s.info()
    assert gone.value.kind == "session_not_found"


def test_sessions_are_separate(client: sp.Client) -> None:
    with client.session(affinity="strict_queue") as a, client.session(affinity="strict_queue") as b:
        assert a.id != b.id
        assert (a.execute("tally"), a.execute("tally"), b.execute("tally")) == (1, 2, 1)
        assert a.affinity == "strict_queue"


def test_a_session_of_another_pool_and_its_streams(client: sp.Client, files: Path) -> None:
    with client.session(pool="test") as s:
        assert s.pool == "test"
        assert s.execute("whoami")["session_id"] == s.id
        assert [item["i"] for item in s.stream("produce", n=3)] == [0, 1, 2]
        assert s.execute("tally", pool="default") == 1


def test_strict_fail_fast_refuses_while_the_worker_is_busy(client: sp.Client, files: Path) -> None:
    with client.session(pool="test", affinity="strict_fail_fast") as s:
        s.execute("whoami")  # the session now has its worker
        started, release = files / "started", files / "release"
        outcome: list[str] = []
        holder = threading.Thread(
            target=lambda: outcome.append(s.execute("hold", ms=60_000, started=str(started), release=str(release))),
            daemon=True,
        )
        holder.start()
        wait_for(started.exists, what="the holding call to start")
        with pytest.raises(sp.WorkerBusyError) as busy:
            s.execute("whoami")
        assert (busy.value.kind, busy.value.code) == ("worker_busy", grpc.StatusCode.UNAVAILABLE)
        release.touch()
        holder.join(timeout=30)
        assert outcome == ["released"]
        assert s.execute("whoami")["session_id"] == s.id  # free again


def test_an_unknown_affinity_is_refused_here(client: sp.Client) -> None:
    with pytest.raises(ValueError, match="strict_queue"):
        client.session(affinity="sticky")


def test_a_deadline_cancels_the_call_in_the_worker(client: sp.Client, files: Path) -> None:
    marker = files / "cancelled"
    with pytest.raises(sp.DeadlineExceeded) as err:
        client.execute("hold", pool="test", ms=30_000, marker=str(marker), timeout=0.5)
    assert (err.value.kind, err.value.code) == ("timeout", grpc.StatusCode.DEADLINE_EXCEEDED)
    wait_for(lambda: marker.exists() and marker.read_text() == "cancelled", what="the worker to see the Cancel")


def test_the_client_default_timeout_applies(serve: Serve, files: Path) -> None:
    marker = files / "cancelled"
    with sp.Client(serve.address, token=serve.token, timeout=0.5) as client:
        with pytest.raises(sp.DeadlineExceeded):
            client.execute("hold", pool="test", ms=30_000, marker=str(marker))
        # A call's own timeout wins over the client's.
        assert client.execute("hold", pool="test", ms=700, timeout=10) == "finished"
    wait_for(marker.exists, what="the worker to see the Cancel")
