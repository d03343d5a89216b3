"""The package without numpy (the optional ``numpy`` extra): workers start
and serve tools; an array is refused with an error naming the extra.

Workers here get a ``numpy`` that fails to import ahead of any installed one,
so the tests mean the same in an environment with numpy as in one without
(``tests/python_without_numpy.rs`` runs them in a venv that has none). Nothing
here imports numpy.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from wire_client import Shared, WorkerClient, start_worker

from snakepit_bridge._codec import decode
from snakepit_bridge._proto import snakepit_pb2 as pb

EXTRA = "snakepit-bridge[numpy]"


@pytest.fixture(scope="module")
def hidden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose ``numpy`` fails to import: put ahead of any installed one."""
    hidden = tmp_path_factory.mktemp("no-numpy")
    (hidden / "numpy").mkdir()
    (hidden / "numpy" / "__init__.py").write_text('raise ImportError("No module named \'numpy\'")\n')
    return hidden


@pytest.fixture(scope="module")
def shared_bare(hidden: Path) -> Iterator[Shared[WorkerClient]]:
    s = Shared(lambda: start_worker(python_path=[str(hidden)]))
    yield s
    s.close()


@pytest.fixture
def bare(shared_bare: Shared[WorkerClient]) -> WorkerClient:
    """A showcase worker that cannot import numpy."""
    return shared_bare.live()


def ndarray_value() -> pb.Value:
    v = pb.Value()
    v.ndarray.dtype = "float64"
    v.ndarray.shape.extend([2])
    v.ndarray.data = b"\0" * 16
    return v


def test_a_worker_without_numpy_starts_and_serves_tools(bare: WorkerClient) -> None:
    assert bare.hello is not None and "add" in {t.name for t in bare.hello.hello.tools}
    assert bare.call("add", a=2, b=3) == 5
    assert bare.call("echo", message="no arrays") == "no arrays"
    assert bare.call("process_text", text="abc", operation="upper")["result"] == "ABC"


def test_an_ndarray_argument_is_refused_naming_the_extra(bare: WorkerClient) -> None:
    f = bare.call_frame("echo", raw_kwargs={"message": ndarray_value()})
    assert f.WhichOneof("kind") == "error", f
    assert "needs numpy" in f.error.message and EXTRA in f.error.message, f.error.message
    assert bare.call("add", a=1, b=1) == 2


def test_an_ndarray_result_is_the_tool_s_own_import_error(bare: WorkerClient) -> None:
    f = bare.call_frame("matrix")
    assert f.WhichOneof("kind") == "error", f
    assert f.error.python_type in ("ImportError", "ModuleNotFoundError"), f.error


def test_a_stacked_batched_tool_fails_its_batches_naming_the_extra(
    spawn: Callable[..., WorkerClient], hidden: Path
) -> None:
    c = spawn("batch_adapter.BatchAdapter", python_path=[str(hidden)])
    fid = c.execute_batch("stacked", [{"a": [1, 2]}, {"a": [3, 4]}])
    f = c.reply(fid)
    assert f.WhichOneof("kind") == "error" and f.error.python_type == "ModuleNotFoundError", f
    assert "Batch(stack=True)" in f.error.message and EXTRA in f.error.message, f.error.message
    # Batched tools that do not stack are served.
    fid = c.execute_batch("square", [{"x": 3}])
    assert decode(c.reply(fid).result.items[0].value) == {"x": 9}


def test_zero_copy_without_numpy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)
    from snakepit_bridge import zero_copy

    with pytest.raises(ModuleNotFoundError, match=r"zero_copy\.empty needs numpy.*snakepit-bridge\[numpy\]"):
        zero_copy.empty((2, 2))


def test_decoding_without_numpy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)
    from snakepit_bridge._codec import DecodingError

    with pytest.raises(DecodingError, match=r"an ndarray value needs numpy.*snakepit-bridge\[numpy\]"):
        decode(ndarray_value())


def test_the_package_declares_numpy_as_an_extra_only() -> None:
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    import tomllib

    project = tomllib.loads(pyproject)["project"]
    assert not any(d.lower().startswith("numpy") for d in project["dependencies"])
    assert any(d.lower().startswith("numpy") for d in project["optional-dependencies"]["numpy"])
