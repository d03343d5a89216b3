"""A test that leaves its module's shared worker broken does not break the
tests after it: the next one gets a live worker (tests run in file order)."""

from __future__ import annotations

import pytest
from wire_client import Shared, WorkerClient

_seen: dict[str, int] = {}


def test_a_test_that_kills_the_shared_worker(showcase: WorkerClient) -> None:
    assert showcase.call("add", a=1, b=2) == 3
    _seen["killed"] = showcase.proc.pid
    showcase.proc.kill()
    showcase.proc.wait(timeout=5)


def test_the_next_test_gets_a_new_live_worker(showcase: WorkerClient, shared_showcase: Shared[WorkerClient]) -> None:
    assert showcase.proc.pid != _seen["killed"]
    assert shared_showcase.replaced == 1
    assert showcase.call("add", a=2, b=3) == 5


def test_a_test_that_leaves_a_request_unanswered(showcase: WorkerClient) -> None:
    _seen["left"] = showcase.proc.pid
    fid = showcase.execute("sleep", ms=1500)
    with pytest.raises(TimeoutError):
        showcase.reply(fid, timeout=0.05)
    assert showcase.pending == {fid}


def test_the_next_test_sees_no_reply_of_the_previous_one(
    showcase: WorkerClient, shared_showcase: Shared[WorkerClient]
) -> None:
    assert showcase.proc.pid != _seen["left"]
    assert shared_showcase.replaced == 2
    assert showcase.call("echo", message="fresh") == "fresh"
    showcase.recv_nothing(within=0.2)


def test_a_healthy_worker_is_kept(showcase: WorkerClient, shared_showcase: Shared[WorkerClient]) -> None:
    assert showcase.call("noop") is None
    assert shared_showcase.replaced == 2
