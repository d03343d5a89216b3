"""The package as installed: its public surface, its type information, and
what importing it pulls in (neither numpy nor the worker bridge)."""

from __future__ import annotations

import importlib.resources
import subprocess
import sys

import snakepit_client as sp


def test_the_public_names_exist_and_nothing_private_is_exported() -> None:
    for name in sp.__all__:
        assert hasattr(sp, name), name
        assert not name.startswith("_")
    assert {"Client", "AsyncClient", "Session", "SnakepitError", "Ref", "StreamRef", "NdArray"} <= set(sp.__all__)


def test_it_is_typed() -> None:
    files = importlib.resources.files("snakepit_client")
    assert files.joinpath("py.typed").is_file()
    assert files.joinpath("_proto/service_pb2.pyi").is_file()
    assert files.joinpath("_proto/snakepit_pb2.pyi").is_file()


def test_importing_it_needs_neither_numpy_nor_the_bridge() -> None:
    code = "import sys, snakepit_client; print(sorted(m for m in ('numpy', 'snakepit_bridge') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
