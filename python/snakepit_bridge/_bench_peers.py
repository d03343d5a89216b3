"""Measure Python's own process pools on a trivial call, as peers for snakepit's benchmark.

``python -m snakepit_bridge._bench_peers --workers 2 --latency-calls N --throughput-calls M --in-flight 64 --json``
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["main"]


def trivial() -> None:
    """The call being measured: does nothing."""
    return None


def _percentile(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return 0.0
    i = min(len(sorted_ns) - 1, int(round(q * (len(sorted_ns) - 1))))
    return sorted_ns[i] / 1000.0


def _latency(call_once: Callable[[], None], calls: int, budget_s: float) -> tuple[float, float, int]:
    for _ in range(min(200, calls)):
        call_once()
    samples: list[int] = []
    deadline = time.monotonic() + budget_s
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        call_once()
        samples.append(time.perf_counter_ns() - t0)
        if time.monotonic() > deadline:
            break
    samples.sort()
    return _percentile(samples, 0.50), _percentile(samples, 0.99), len(samples)


def _throughput(submit: Callable[[], Any], wait: Callable[[Any], None], calls: int, in_flight: int, budget_s: float) -> tuple[float, int]:
    outstanding: deque[Any] = deque()
    done = 0
    sent = 0
    t0 = time.perf_counter()
    deadline = time.monotonic() + budget_s
    while done < calls:
        while sent < calls and len(outstanding) < in_flight:
            outstanding.append(submit())
            sent += 1
        wait(outstanding.popleft())
        done += 1
        if time.monotonic() > deadline:
            calls = sent  # stop submitting; drain what is outstanding
    elapsed = time.perf_counter() - t0
    return done / elapsed if elapsed > 0 else 0.0, done


def _row(name: str, p50: float, p99: float, tput: float, calls: int) -> dict[str, Any]:
    return {
        "name": name,
        "latency_p50_us": round(p50, 1),
        "latency_p99_us": round(p99, 1),
        "throughput_per_s": round(tput, 1),
        "calls": calls,
    }


def _bench_executor(workers: int, lat_calls: int, tp_calls: int, in_flight: int, budget: float) -> dict[str, Any]:
    with cf.ProcessPoolExecutor(max_workers=workers) as ex:
        list(ex.map(trivial_arg, range(workers * 4)))  # start every worker
        p50, p99, n_lat = _latency(lambda: ex.submit(trivial).result(), lat_calls, budget)
        tput, n_tp = _throughput(lambda: ex.submit(trivial), lambda f: f.result(), tp_calls, in_flight, budget)
    return _row("ProcessPoolExecutor", p50, p99, tput, n_lat + n_tp)


def _bench_pool(workers: int, lat_calls: int, tp_calls: int, in_flight: int, budget: float) -> dict[str, Any]:
    with mp.Pool(processes=workers) as pool:
        pool.map(trivial_arg, range(workers * 4))
        p50, p99, n_lat = _latency(lambda: pool.apply_async(trivial).get(), lat_calls, budget)
        tput, n_tp = _throughput(lambda: pool.apply_async(trivial), lambda r: r.get(), tp_calls, in_flight, budget)
    return _row("multiprocessing.Pool", p50, p99, tput, n_lat + n_tp)


def trivial_arg(_: int) -> None:
    """Warm-up call used with map()."""
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m snakepit_bridge._bench_peers", description=__doc__)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--latency-calls", type=int, default=2000)
    p.add_argument("--throughput-calls", type=int, default=20000)
    p.add_argument("--in-flight", type=int, default=64)
    p.add_argument("--budget-s", type=float, default=3.0, help="time cap per measurement phase")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = p.parse_args(argv)
    peers = [
        _bench_executor(a.workers, a.latency_calls, a.throughput_calls, a.in_flight, a.budget_s),
        _bench_pool(a.workers, a.latency_calls, a.throughput_calls, a.in_flight, a.budget_s),
    ]
    if a.json:
        print(json.dumps({"peers": peers}))
    else:
        print(f"{'peer':<22}{'p50 us':>10}{'p99 us':>10}{'calls/s':>12}")
        for r in peers:
            print(f"{r['name']:<22}{r['latency_p50_us']:>10}{r['latency_p99_us']:>10}{r['throughput_per_s']:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
