"""The Python side of `snakepit bench`'s gRPC section (private).

Two commands, both run by `snakepit bench` (src/cli/bench/grpc.rs):

- ``measure``: the one harness for every server measured. With a
  :class:`~snakepit_client.Client` it times ``execute(tool)`` one call at a
  time (p50, p99), then keeps ``--in-flight`` calls in flight (an
  :class:`~snakepit_client.AsyncClient` on one event loop, or threads of
  ``Client``) and counts calls per second. Prints one JSON object.
- ``peer``: the peer snakepit is compared with, a plain grpcio Python server
  answering the same ``snakepit.v1.Snakepit/Execute`` method itself (it
  decodes the request and answers ``None``, as the ``noop`` tool does), so
  that the client, its messages and the transport are the same on both
  sides and only what serves the call differs. Prints one JSON line with its
  address when it listens, then serves until SIGTERM, SIGINT or EOF on stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import grpc.aio

from ._aio import AsyncClient
from ._client import Client
from ._proto import service_pb2, snakepit_pb2

__all__: list[str] = []

_SERVICE = "snakepit.v1.Snakepit"


def _percentile_us(sorted_ns: list[int], p: float) -> float:
    if not sorted_ns:
        return 0.0
    rank = round(p / 100.0 * (len(sorted_ns) - 1))
    return sorted_ns[min(rank, len(sorted_ns) - 1)] / 1000.0


def _latency(target: str, token: str | None, tool: str, calls: int, warmup: int) -> dict[str, float]:
    client = Client(target, token=token)
    try:
        for _ in range(warmup):
            client.execute(tool)
        samples: list[int] = []
        clock = time.perf_counter_ns
        execute = client.execute
        for _ in range(calls):
            t = clock()
            execute(tool)
            samples.append(clock() - t)
    finally:
        client.close()
    samples.sort()
    return {
        "latency_p50_us": round(_percentile_us(samples, 50.0), 1),
        "latency_p99_us": round(_percentile_us(samples, 99.0), 1),
    }


async def _throughput_aio(target: str, token: str | None, tool: str, calls: int, in_flight: int) -> float:
    client = AsyncClient(target, token=token)
    try:
        await asyncio.gather(*(client.execute(tool) for _ in range(in_flight)))
        remaining = calls

        async def caller() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await client.execute(tool)

        t = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(in_flight)))
        return calls / (time.perf_counter() - t)
    finally:
        await client.close()


def _throughput_threads(target: str, token: str | None, tool: str, calls: int, in_flight: int) -> float:
    client = Client(target, token=token)
    lock = threading.Lock()
    remaining = calls

    def caller() -> None:
        nonlocal remaining
        while True:
            with lock:
                if remaining <= 0:
                    return
                remaining -= 1
            client.execute(tool)

    try:
        with ThreadPoolExecutor(in_flight) as pool:
            list(pool.map(lambda _: client.execute(tool), range(in_flight)))
            t = time.perf_counter()
            for future in [pool.submit(caller) for _ in range(in_flight)]:
                future.result()
            return calls / (time.perf_counter() - t)
    finally:
        client.close()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Latency with one caller, then throughput with ``in_flight`` calls in flight."""
    token = os.environ.get("SNAKEPIT_BENCH_TOKEN") or None
    out: dict[str, Any] = _latency(args.target, token, args.tool, args.latency_calls, args.warmup)
    if args.concurrency == "aio":
        rate = asyncio.run(_throughput_aio(args.target, token, args.tool, args.throughput_calls, args.in_flight))
    else:
        rate = _throughput_threads(args.target, token, args.tool, args.throughput_calls, args.in_flight)
    out["throughput_per_s"] = round(rate, 1)
    return out


def _peer_handler() -> Any:
    def execute(request: Any, context: Any) -> Any:
        # The trivial work: the request was decoded; answer None.
        return service_pb2.ExecuteResponse(value=snakepit_pb2.Value(null=snakepit_pb2.NULL_VALUE))

    return grpc.method_handlers_generic_handler(
        _SERVICE,
        {
            "Execute": grpc.unary_unary_rpc_method_handler(
                execute,
                request_deserializer=service_pb2.ExecuteRequest.FromString,
                response_serializer=service_pb2.ExecuteResponse.SerializeToString,
            )
        },
    )


def _address(listen: str, port: int) -> str:
    if listen.startswith("unix:"):
        return listen
    host = listen.rsplit(":", 1)[0]
    return f"{host}:{port}"


def _announce(address: str) -> None:
    print(json.dumps({"listening": address}), flush=True)


def _stop_on_eof(stop: Callable[[], object]) -> None:
    def wait() -> None:
        sys.stdin.read()
        stop()

    threading.Thread(target=wait, daemon=True).start()


def _serve_sync(listen: str, threads: int) -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=threads))
    server.add_generic_rpc_handlers((_peer_handler(),))
    port = server.add_insecure_port(listen)
    server.start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    _stop_on_eof(done.set)
    _announce(_address(listen, port))
    done.wait()
    server.stop(0.5).wait()


async def _serve_aio(listen: str) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_peer_handler(),))
    port = server.add_insecure_port(listen)
    await server.start()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    _stop_on_eof(lambda: loop.call_soon_threadsafe(done.set))
    _announce(_address(listen, port))
    await done.wait()
    await server.stop(0.5)


def peer(args: argparse.Namespace) -> None:
    """Serves Execute from a grpcio server in this process."""
    if args.kind == "aio":
        asyncio.run(_serve_aio(args.listen))
    else:
        _serve_sync(args.listen, args.threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m snakepit_client._bench")
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("measure", help="time execute(tool) against a server")
    m.add_argument("--target", required=True)
    m.add_argument("--tool", default="noop")
    m.add_argument("--latency-calls", type=int, default=5_000)
    m.add_argument("--throughput-calls", type=int, default=20_000)
    m.add_argument("--in-flight", type=int, default=64)
    m.add_argument("--warmup", type=int, default=500)
    m.add_argument("--concurrency", choices=("aio", "threads"), default="aio")
    p = commands.add_parser("peer", help="serve Execute from a plain grpcio server")
    p.add_argument("--listen", required=True)
    p.add_argument("--kind", choices=("aio", "sync"), default="aio")
    p.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    if args.command == "measure":
        print(json.dumps(measure(args)))
    else:
        peer(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
