"""Fixtures that start a real ``snakepit serve`` (the binary in
``SNAKEPIT_BIN``) on loopback, with pools of the showcase adapter and of
the test adapters in ``adapters/``, run by this very interpreter (the test
venv has the bridge installed).

Under cargo (``tests/python_client.rs`` sets ``SNAKEPIT_BIN`` and
``SNAKEPIT_REQUIRE_SERVER``) a missing binary fails the tests that need it;
run by hand without it, they are skipped.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

ADAPTERS = Path(__file__).resolve().parent / "adapters"
TOKEN = "s3cret-test-token"
START_BUDGET_S = 60.0


def wait_for(check: Callable[[], bool], *, budget: float = 10.0, what: str = "a condition") -> None:
    """Poll ``check`` until it holds, for at most ``budget`` seconds."""
    deadline = time.monotonic() + budget
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {budget}s waiting for {what}")
        time.sleep(0.01)


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


@dataclass
class Serve:
    """A running ``snakepit serve``: its address, the token it wants, its
    stderr so far (kept for failure messages)."""

    proc: subprocess.Popen[bytes]
    address: str
    token: str | None
    dir: Path
    stderr: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "".join(self.stderr[-200:])

    def stop(self) -> int:
        """SIGTERM, then wait (graceful shutdown); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise AssertionError(f"snakepit serve ignored SIGTERM for 30 s:\n{self.log()}") from None
        return self.proc.returncode


def snakepit_bin() -> str:
    path = os.environ.get("SNAKEPIT_BIN", "")
    if path:
        return path
    if os.environ.get("SNAKEPIT_REQUIRE_SERVER") or os.environ.get("CARGO"):
        pytest.fail("SNAKEPIT_BIN is not set: the client tests need the snakepit binary")
    pytest.skip("SNAKEPIT_BIN is not set (the path of the snakepit binary): no server to test against")


def pool_toml(name: str, adapter: str, *, size: int = 2, extra: str = "") -> str:
    return f"""
[[pools]]
name = "{name}"
size = {size}
adapter = "{adapter}"
python_path = ["{ADAPTERS}"]
{extra}
"""


def start_serve(
    dir: Path, pools: str, *, listen: str = "127.0.0.1:0", token: str | None = TOKEN, args: tuple[str, ...] = ()
) -> Serve:
    """Start ``snakepit serve`` with ``pools`` (TOML) and wait for the line
    saying where it serves."""
    binary = snakepit_bin()
    dir.mkdir(parents=True, exist_ok=True)
    config = dir / "snakepit.toml"
    config.write_text(f'[python]\ninterpreter = "{sys.executable}"\n{pools}')
    cmd = [binary, "serve", "--config", str(config), "--listen", listen, *args]
    if token is not None:
        token_file = dir / "token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        cmd += ["--token-file", str(token_file)]
    proc = subprocess.Popen(cmd, cwd=dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines: list[str] = []
    found: queue.Queue[str] = queue.Queue()

    def drain() -> None:
        # Read stderr to its end, or the server would block on a full pipe.
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace")
            lines.append(line)
            if "snakepit: serving on " in line:
                found.put(line.split("serving on ", 1)[1].split()[0])
        found.put("")

    threading.Thread(target=drain, name="serve-stderr", daemon=True).start()
    try:
        address = found.get(timeout=START_BUDGET_S)
    except queue.Empty:
        address = ""
    if not address:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"snakepit serve did not say where it serves:\n{''.join(lines[-100:])}")
    return Serve(proc, address, token, dir, lines)


def stopped_cleanly(serve: Serve) -> None:
    """A graceful stop after SIGTERM: exit code 128 + SIGTERM (143)."""
    code = serve.stop()
    assert code == 128 + signal.SIGTERM, f"snakepit serve exited with {code}:\n{serve.log()}"


@pytest.fixture(scope="session")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """The main server: a showcase pool (the default) and a pool of the test
    adapter with a small stream window; a token is required."""
    pools = pool_toml("default", "snakepit_bridge.showcase.ShowcaseAdapter") + pool_toml(
        "test", "client_adapter.ClientTestAdapter", extra="stream_window = 4"
    )
    server = start_serve(tmp_path_factory.mktemp("serve"), pools)
    yield server
    stopped_cleanly(server)


@pytest.fixture
def client(serve: Serve) -> Iterator[object]:
    import snakepit_client as sp

    with sp.Client(serve.address, token=serve.token, timeout=30) as c:
        yield c


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A directory for the files the test adapter writes."""
    return tmp_path


def health(address: str, service: str = "", **channel: bytes) -> int:
    """The grpc.health.v1 status of ``service`` (no token: health is public)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    # grpcio sends a Unix socket's path as the authority unless told otherwise.
    options = [("grpc.default_authority", "localhost")] if address.startswith("unix:") else []
    if channel:
        ch = grpc.secure_channel(address, grpc.ssl_channel_credentials(**channel), options=options)
    else:
        ch = grpc.insecure_channel(address, options=options)
    with ch:
        status: int = (
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        )
        return status
