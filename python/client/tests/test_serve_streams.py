"""Streams through a real ``snakepit serve``: a slow reader holds the worker
back (flow control reaches its credits), and a reader that stops cancels
the worker's generator (``GeneratorExit`` in Python)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import read_text, wait_for

import snakepit_client as sp

pytestmark = pytest.mark.server

ITEMS = 300
ITEM_BYTES = 256 * 1024
# How far the worker may run ahead of the reader: the test pool's stream
# window (4 items, the worker's credits), plus what the HTTP/2 windows hold
# in between — grpcio's BDP estimate grows the reader's window up to 8 MiB
# while data flows fast (32 items of this size) — plus the server's encoder.
MAX_AHEAD = 4 + (8 << 20) // ITEM_BYTES + 8


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


def test_a_slow_reader_holds_the_producer_back(client: sp.Client, files: Path) -> None:
    progress = files / "progress"
    with client.stream("produce", pool="test", n=ITEMS, size=ITEM_BYTES, progress=str(progress)) as items:
        first = next(items)
        assert first["i"] == 0 and len(first["pad"]) == ITEM_BYTES
        stalled = settled(progress)
        assert stalled - 1 <= MAX_AHEAD, f"the worker ran {stalled - 1} items ahead of a reader that took one"
        # Reading on lets it go on, never far ahead of what was read.
        read = 1
        for item in items:
            assert item["i"] == read
            read += 1
            if read in (50, 150):
                ahead = settled(progress) - read
                assert ahead <= MAX_AHEAD, f"{ahead} items ahead after {read} were read"
        assert read == ITEMS
    assert produced(progress) == ITEMS


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
