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

from wire_client import WorkerClient, start_worker  # noqa: E402


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
