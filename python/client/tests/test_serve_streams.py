"""Streams through a real ``snakepit serve``: a slow reader holds the worker
back (flow control reaches its credits), and a reader that stops cancels
the worker's generator (``GeneratorExit`` in Python)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import Serve, read_text, wait_for

import snakepit_client as sp

pytestmark = pytest.mark.server

ITEMS = 300
ITEM_BYTES = 256 * 1024
STREAM_WINDOW = 4  # the test pool's `stream_window`: the worker's credits
# With a fixed HTTP/2 window (64 KiB, smaller than one item), what sits
# between the worker and the reader is its credits, the item it computed
# before waiting for one, and an item or two in the server's encoder.
MAX_AHEAD = STREAM_WINDOW + 5
# grpcio's default adaptive window (its BDP estimate) lets the reader's
# HTTP/2 window grow to several MiB while data flows fast: more items fit
# in between, still a bounded number.
MAX_AHEAD_ADAPTIVE = STREAM_WINDOW + (8 << 20) // ITEM_BYTES + 8
FIXED_WINDOW = [("grpc.http2.bdp_probe", 0)]


def produced(progress: Path) -> int:
    text = read_text(progress)
    return int(text) if text else 0


def settled(progress: Path, *, quiet: float = 0.5, budget: float = 15.0) -> int:
    """The producer's count once it has stopped moving for ``quiet`` seconds."""
    last, since = produced(progress), time.monotonic()
    deadline = since + budget
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = produced(progress)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    raise AssertionError(f"the producer never stopped: {last} items")


def test_a_slow_reader_holds_the_producer_back(serve: Serve, files: Path) -> None:
    progress = files / "progress"
    with (
        sp.Client(serve.address, token=serve.token, channel_options=FIXED_WINDOW) as client,
        client.stream("produce", pool="test", n=ITEMS, size=ITEM_BYTES, progress=str(progress)) as items,
    ):
        read = 0
        for item in items:
            assert item["i"] == read and len(item["pad"]) == ITEM_BYTES
            read += 1
            if read in (1, 2, 50, 150, ITEMS - 20):
                ahead = settled(progress) - read
                assert ahead <= MAX_AHEAD, f"the worker ran {ahead} items ahead of a reader that took {read}"
        assert read == ITEMS
    assert produced(progress) == ITEMS


def test_with_an_adaptive_window_the_producer_still_stops(client: sp.Client, files: Path) -> None:
    progress = files / "progress"
    with client.stream("produce", pool="test", n=ITEMS, size=ITEM_BYTES, progress=str(progress)) as items:
        assert next(items)["i"] == 0
        ahead = settled(progress) - 1
        assert ahead <= MAX_AHEAD_ADAPTIVE, f"the worker ran {ahead} items ahead of a reader that took one"
        assert [item["i"] for item in items] == list(range(1, ITEMS))


def test_closing_a_stream_mid_way_closes_the_generator(client: sp.Client, files: Path) -> None:
    marker, progress = files / "exit", files / "progress"
    items = client.stream("produce", pool="test", n=100_000, progress=str(progress), exit_marker=str(marker))
    assert [next(items)["i"] for _ in range(3)] == [0, 1, 2]
    items.close()
    wait_for(lambda: read_text(marker) == "GeneratorExit", what="GeneratorExit in the worker")
    assert produced(progress) < 100_000
    with pytest.raises(StopIteration):
        next(items)


def test_breaking_out_of_a_for_loop_cancels_the_stream(client: sp.Client, files: Path) -> None:
    marker = files / "exit"
    for item in client.stream("produce", pool="test", n=100_000, exit_marker=str(marker)):
        if item["i"] == 5:
            break
    wait_for(lambda: read_text(marker) == "GeneratorExit", what="GeneratorExit after break")


def test_leaving_a_with_block_cancels_the_stream(client: sp.Client, files: Path) -> None:
    marker = files / "exit"
    with client.stream("produce", pool="test", n=100_000, exit_marker=str(marker)) as items:
        next(items)
    wait_for(lambda: read_text(marker) == "GeneratorExit", what="GeneratorExit after the with block")
    # The pool is free again: its workers take new calls.
    assert list(client.stream("produce", pool="test", n=2)) == [{"i": 0, "pad": b""}, {"i": 1, "pad": b""}]


def test_a_failing_stream_raises_its_error(client: sp.Client) -> None:
    with pytest.raises(sp.UnknownToolError):
        list(client.stream("no_such_stream"))
    with pytest.raises(sp.BadArgumentsError):
        list(client.stream("produce", pool="test", n="many"))
