"""Tokens, TLS, health and load against real ``snakepit serve`` processes:
the main one (token, TCP), one with mutual TLS, and one on a Unix socket
whose pool can be made to degrade."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from conftest import Serve, health, pool_toml, start_serve, stopped_cleanly, wait_for
from grpc_health.v1 import health_pb2

import snakepit_client as sp

pytestmark = pytest.mark.server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_no_token_and_a_wrong_token_are_unauthenticated(serve: Serve) -> None:
    for token in (None, "wrong-token"):
        with sp.Client(serve.address, token=token, timeout=10) as client:
            with pytest.raises(sp.UnauthenticatedError) as err:
                client.execute("add", a=2, b=3)
            assert (err.value.kind, err.value.code) == ("unauthenticated", grpc.StatusCode.UNAUTHENTICATED)
            with pytest.raises(sp.UnauthenticatedError):
                list(client.stream("progress", steps=1))
            with pytest.raises(sp.UnauthenticatedError):
                client.call("math", "sqrt", 16)
    with sp.Client(serve.address, token=serve.token, timeout=10) as client:
        assert client.execute("add", a=2, b=3) == 5


def test_health_answers_serving_without_a_token(serve: Serve) -> None:
    for service in ("", "snakepit.v1.Snakepit", "snakepit.pool.default", "snakepit.pool.test"):
        assert health(serve.address, service) == SERVING, service


def test_an_unreachable_server_is_unavailable(tmp_path: Path) -> None:
    with sp.Client(f"unix:{tmp_path}/nobody.sock", timeout=5) as client, pytest.raises(sp.UnavailableError) as err:
        client.execute("add", a=1, b=2)
    assert (err.value.kind, err.value.code) == ("unavailable", grpc.StatusCode.UNAVAILABLE)


def test_64_concurrent_clients_each_get_their_own_answers(serve: Serve) -> None:
    clients = 64
    start = threading.Barrier(clients)

    def run(i: int) -> list[int]:
        with sp.Client(serve.address, token=serve.token, timeout=60) as client:
            start.wait(timeout=60)
            sums = [client.execute("add", a=i, b=j) for j in range(8)]
            with client.session(affinity="strict_queue") as s:
                tallies = [s.execute("tally") for _ in range(3)]
            assert tallies == [1, 2, 3]
            return sums

    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(run, range(clients)))
    assert results == [[i + j for j in range(8)] for i in range(clients)]


# ---------------------------------------------------------------- TLS


@dataclass
class TlsServe:
    serve: Serve
    ca: bytes
    client_key: bytes
    client_chain: bytes


@pytest.fixture(scope="module")
def tls_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServe]:
    """A server with a certificate of a CA made here, asking clients for
    theirs (mutual TLS)."""
    trustme = pytest.importorskip("trustme")
    dir = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    server_cert.private_key_pem.write_to_path(str(dir / "server.key"))
    (dir / "server.pem").write_bytes(b"".join(blob.bytes() for blob in server_cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(dir / "ca.pem"))
    client_cert = ca.issue_cert("client.snakepit.test")
    args = (
        "--tls-cert",
        str(dir / "server.pem"),
        "--tls-key",
        str(dir / "server.key"),
        "--client-ca",
        str(dir / "ca.pem"),
    )
    server = start_serve(dir, pool_toml("default", "snakepit_bridge.showcase.ShowcaseAdapter", size=1), args=args)
    yield TlsServe(
        server,
        ca.cert_pem.bytes(),
        client_cert.private_key_pem.bytes(),
        b"".join(blob.bytes() for blob in client_cert.cert_chain_pems),
    )
    stopped_cleanly(server)


def test_tls_with_a_client_certificate(tls_serve: TlsServe) -> None:
    s = tls_serve
    with sp.Client(
        s.serve.address,
        token=s.serve.token,
        root_certificates=s.ca,
        private_key=s.client_key,
        certificate_chain=s.client_chain,
        timeout=10,
    ) as client:
        assert client.execute("add", a=2, b=3) == 5
        assert client.call("math", "sqrt", 16) == 4.0
    assert (
        health(s.serve.address, "", root_certificates=s.ca, private_key=s.client_key, certificate_chain=s.client_chain)
        == SERVING
    )


def test_tls_refuses_clients_without_a_certificate_or_in_plain_text(tls_serve: TlsServe) -> None:
    s = tls_serve
    for options in ({"root_certificates": s.ca}, {}):
        client = sp.Client(s.serve.address, token=s.serve.token, timeout=5, **options)  # type: ignore[arg-type]
        with client, pytest.raises(sp.UnavailableError):
            client.execute("add", a=2, b=3)


# ------------------------------------------------------ a degrading pool


@pytest.fixture
def fragile_serve(tmp_path: Path) -> Iterator[tuple[Serve, Path]]:
    """A server on a Unix socket, without a token (it listens on nothing
    another machine reaches), with a steady pool and a fragile one that
    cannot restart once its marker file exists."""
    marker = tmp_path / "broken"
    fragile = pool_toml(
        "fragile",
        "fragile_adapter.FragileAdapter",
        size=1,
        extra=f"""env = {{ FRAGILE_MARKER = "{marker}" }}
[pools.restart]
max_restarts = 1
restart_window_ms = 600000
backoff_initial_ms = 10
backoff_max_ms = 50
""",
    )
    steady = pool_toml("steady", "snakepit_bridge.showcase.ShowcaseAdapter", size=1)
    server = start_serve(tmp_path / "serve", steady + fragile, listen=f"unix:{tmp_path}/snakepit.sock", token=None)
    yield server, marker
    stopped_cleanly(server)


def test_health_flips_when_a_pool_degrades(fragile_serve: tuple[Serve, Path]) -> None:
    server, marker = fragile_serve
    assert server.address.startswith("unix:")
    for service in ("", "snakepit.pool.fragile", "snakepit.pool.steady"):
        assert health(server.address, service) == SERVING, service
    with sp.Client(server.address, timeout=30) as client:
        assert client.execute("ping", pool="fragile") == "pong"
        marker.write_text("broken")
        with pytest.raises(sp.WorkerCrashedError) as crashed:
            client.execute("crash", pool="fragile")
        assert crashed.value.kind == "worker_crashed"
        wait_for(
            lambda: health(server.address, "snakepit.pool.fragile") == NOT_SERVING,
            budget=30,
            what="the fragile pool's health to say NOT_SERVING",
        )
        assert health(server.address, "") == NOT_SERVING
        assert health(server.address, "snakepit.pool.steady") == SERVING
        assert client.status("fragile")["fragile"]["degraded"] is True
        with pytest.raises(sp.UnavailableError) as degraded:
            client.execute("ping", pool="fragile")
        assert degraded.value.kind == "pool_degraded"
        assert client.execute("echo", pool="steady", message="still here") == "still here"
