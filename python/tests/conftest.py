from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Test the package in this tree, not a copy installed in the environment (the
# workers the tests start get this directory on PYTHONPATH as well).
_PYTHON_DIR = str(Path(__file__).resolve().parent.parent)
if sys.path[:1] != [_PYTHON_DIR]:
    sys.path.insert(0, _PYTHON_DIR)

from wire_client import Shared, WorkerClient, start_worker  # noqa: E402


@pytest.fixture(scope="module")
def shared_showcase() -> Iterator[Shared[WorkerClient]]:
    """The showcase worker of a test module (see `showcase`)."""
    s = Shared(start_worker)
    yield s
    s.close()


@pytest.fixture
def showcase(shared_showcase: Shared[WorkerClient]) -> WorkerClient:
    """One showcase worker shared by a test module (stateless tools only),
    replaced when a previous test left it broken."""
    return shared_showcase.live()


@pytest.fixture(scope="module")
def shared_example() -> Iterator[Shared[WorkerClient]]:
    """The example worker of a test module (see `example`)."""
    s = Shared(lambda: start_worker("example_adapter.ExampleAdapter"))
    yield s
    s.close()


@pytest.fixture
def example(shared_example: Shared[WorkerClient]) -> WorkerClient:
    """One worker serving tests/example_adapter.py's ExampleAdapter, shared by
    a test module and replaced when a previous test left it broken."""
    return shared_example.live()


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
