from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from wire_client import WorkerClient, start_worker


@pytest.fixture(scope="module")
def showcase() -> Iterator[WorkerClient]:
    """One showcase worker shared by a test module (stateless tools only)."""
    c = start_worker()
    yield c
    c.close()


@pytest.fixture(scope="module")
def example() -> Iterator[WorkerClient]:
    """One worker serving tests/example_adapter.py's ExampleAdapter."""
    c = start_worker("example_adapter.ExampleAdapter")
    yield c
    c.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., WorkerClient]]:
    """Start dedicated workers; all are closed at the end of the test."""
    started: list[WorkerClient] = []

    def _spawn(adapter: str = "snakepit_bridge.showcase.ShowcaseAdapter", **kwargs: Any) -> WorkerClient:
        c = start_worker(adapter, **kwargs)
        started.append(c)
        return c

    yield _spawn
    for c in started:
        c.close()
