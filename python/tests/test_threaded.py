"""Thread-safe adapters: the thread profile's rules and shared instance, the
guide's testing strategies, the thread-safety checker, telemetry, and the
reference fixtures the Rust tests run (tests/fixtures/reference_*.py)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from snakepit_bridge import (
    BaseAdapter,
    ThreadSafeAdapter,
    ThreadSafetyChecker,
    ThreadSafetyError,
    ThreadSafetyWarning,
    is_thread_safe,
    telemetry,
    thread_safe_method,
    tool,
)
from snakepit_bridge._codec import decode
from snakepit_bridge import _frames
from snakepit_bridge._proto import snakepit_pb2 as pb
from wire_client import PYTHON_DIR, ConcurrentClient, WorkerClient

FIXTURES = str(PYTHON_DIR.parent / "tests" / "fixtures")
THREADS_8 = ["--profile", "thread", "--threads", "8"]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
WARNING = "snakepit.thread_safety.warning"


@pytest.fixture(autouse=True)
def _fixtures_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(FIXTURES)
    import threaded_adapter

    threaded_adapter._barriers.clear()
    yield
    threaded_adapter._barriers.clear()


@pytest.fixture
def mux(spawn: Callable[..., WorkerClient]) -> Iterator[Callable[..., ConcurrentClient]]:
    """Start a worker and share it between test threads."""
    made: list[ConcurrentClient] = []

    def _make(adapter: str, *extra_args: str) -> ConcurrentClient:
        m = ConcurrentClient(spawn(adapter, extra_args=["--python-path", FIXTURES, *extra_args]))
        made.append(m)
        return m

    yield _make
    for m in made:
        m.close()


def until_final(c: WorkerClient, fid: int, timeout: float = 5.0) -> tuple[list[pb.Frame], pb.Frame]:
    """The telemetry frames that came before the final reply to `fid` (any id), and that reply."""
    events: list[pb.Frame] = []
    while True:
        f = c.recv(timeout)
        if f.WhichOneof("kind") == "telemetry":
            events.append(f)
            continue
        assert f.id == fid, f
        return events, f


def result(f: pb.Frame) -> Any:
    assert f.WhichOneof("kind") == "result", f
    return decode(f.result.value)


def meta(f: pb.Frame) -> dict[str, Any]:
    return {k: decode(v) for k, v in f.telemetry.metadata.items()}


def startup_error(c: WorkerClient) -> pb.Error:
    f = c.recv(timeout=20)
    assert f.id == 0 and f.WhichOneof("kind") == "error", f
    assert f.error.kind == pb.ERROR_KIND_STARTUP_FAILED
    assert c.wait_exit() == 3
    return f.error


def model_output(x: list[float]) -> list[float]:
    return (np.array([[1.0, 0.0, 2.0], [0.5, -1.0, 0.0]]) @ np.array(x) + np.array([0.0, 1.0])).tolist()


# -------------------------------------------------- the guide's strategies


def test_hammer_100_requests_from_20_threads_count_exactly_100(mux) -> None:
    m = mux("reference_threaded.MyAdapter", *THREADS_8)
    hello = m.client.hello.hello
    assert hello.profile == "thread" and hello.capacity == 8
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def make_request(i: int) -> None:
        try:
            results.append(m.call("compute", data=[1, 2, 3, 4, 5]))
        except Exception as e:
            errors.append(e)

    with ThreadPoolExecutor(max_workers=20) as executor:
        futures = [executor.submit(make_request, i) for i in range(100)]
        for future in futures:
            future.result(timeout=10)
    assert len(results) == 100
    assert len(errors) == 0
    assert all(r["result"] == 55 for r in results)
    assert sorted(r["request_number"] for r in results) == list(range(1, 101))
    stats = m.call("get_stats")
    assert stats["total_requests"] == 100
    assert stats["requests_by_method"] == {"compute": 100, "get_stats": 1}
    assert stats["errors"] == 0 and stats["active_requests"] == 1


def test_race_detector_10_threads_x_1000_increments_through_a_tool(mux) -> None:
    m = mux("reference_threaded.CounterAdapter", *THREADS_8)
    counts: list[int] = []
    lock = threading.Lock()

    def increment_many() -> None:
        mine = [m.call("increment")["count"] for _ in range(1000)]
        with lock:
            counts.extend(mine)

    threads = [threading.Thread(target=increment_many) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=9)
    assert sorted(counts) == list(range(1, 10_001))  # no increment lost, none seen twice
    assert m.call("get_count") == {"count": 10_000}


def test_race_detector_in_process_with_a_strict_checker() -> None:
    from reference_threaded import CounterAdapter

    adapter = CounterAdapter()
    with ThreadSafetyChecker(enabled=True, strict_mode=True) as checker:

        def increment_many() -> None:
            for _ in range(1000):
                adapter.increment()

        threads = [threading.Thread(target=increment_many) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert adapter.get_count() == {"count": 10_000}
    report = checker.get_report()
    assert report["warnings"] == []
    assert report["methods"]["increment"]["calls"] == 10_000
    stats = adapter.get_stats_dict()
    assert stats["total_requests"] == 10_001 and stats["requests_by_method"]["increment"] == 10_000
    assert stats["threads_seen"] == 11 and stats["active_requests"] == 0


def test_guide_hammer_and_checker_strategies_in_process() -> None:
    from reference_threaded import MyAdapter

    # Strategy 1: concurrent hammer test
    adapter = MyAdapter()
    results = []

    def worker(i: int) -> None:
        for _ in range(100):
            results.append(adapter.compute([i, i + 1, i + 2]))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1000
    assert adapter.get_stats()["total_requests"] == 1000

    # Strategy 3: thread safety checker
    checker = ThreadSafetyChecker(enabled=True, strict_mode=True)
    try:
        adapter = MyAdapter()

        def worker2() -> None:
            for _ in range(50):
                adapter.compute([1, 2, 3])

        threads = [threading.Thread(target=worker2) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        report = checker.get_report()
        assert len(report["warnings"]) == 0
        assert report["methods"]["compute"]["calls"] == 1000
        assert report["total_threads_seen"] == 20
    finally:
        checker.disable()


def test_lock_free_reads_of_a_shared_read_only_model() -> None:
    from reference_threaded import MLAdapter

    adapter = MLAdapter()
    bad: list[Any] = []
    with ThreadSafetyChecker(strict_mode=True) as checker:

        def reader(i: int) -> None:
            for j in range(200):
                x = [float(i), float(j), 1.0]
                got = adapter.predict(x)
                if got != {"prediction": model_output(x), "cached": False}:
                    bad.append(got)

        with ThreadPoolExecutor(max_workers=8) as executor:
            list(executor.map(reader, range(8)))
    assert bad == []
    assert adapter.get_stats()["total_predictions"] == 1600
    assert checker.get_report()["warnings"] == []  # reads take no lock and need none


def test_ml_fixture_over_the_wire(mux) -> None:
    m = mux("reference_threaded.MLAdapter", *THREADS_8)
    inputs = [[float(i), 2.0, -1.0] for i in range(40)]
    with ThreadPoolExecutor(max_workers=10) as executor:
        got = list(executor.map(lambda x: m.call("predict", input_data=x), inputs))
    assert got == [{"prediction": model_output(x), "cached": False} for x in inputs]
    keyed = [m.call("predict", input_data=[1.0, 1.0, 1.0], cache_key="k") for _ in range(20)]
    misses = sum(not r["cached"] for r in keyed)
    assert all(r["prediction"] == model_output([1.0, 1.0, 1.0]) for r in keyed)
    assert 1 <= misses <= 9  # one miss per executor thread at most (8 + 1 threads)
    stats = m.call("get_stats")
    assert stats["total_predictions"] == 40 + misses
    assert stats["adapter_class"] == "MLAdapter" and stats["thread_safe"] is True


def test_thread_locals_cache_per_executor_thread(mux) -> None:
    m = mux("reference_threaded.MyAdapter", "--profile", "thread", "--threads", "1")
    got = [m.call("compute_cached", key="k", data=[1, 2]) for _ in range(10)]
    misses = [g for g in got if not g["cached"]]
    assert 1 <= len(misses) <= 2  # capacity 1: two threads take turns reading and running
    assert all(g["result"] == 5 for g in got)
    assert m.call("get_stats")["total_requests"] == len(misses)


def test_reference_adapter_fixture_still_runs(spawn) -> None:
    c = spawn("reference_adapter.ExampleAdapter", extra_args=["--python-path", FIXTURES])
    assert c.call("echo", message="hi") == "Echo: hi"
    assert c.call("add", a=1.5, b=2) == 3.5
    assert c.call("predict", input_data={"features": [1, 2, 3]}) == {"prediction": [6]}


# --------------------------------------------------------- profile rules


@pytest.mark.parametrize(
    ("adapter", "how"),
    [
        ("example_adapter.ExampleAdapter", "does not declare __thread_safe__ = True"),
        ("threaded_adapter.ExplicitlyUnsafeAdapter", "declares __thread_safe__ = False, not __thread_safe__ = True"),
    ],
)
def test_thread_profile_refuses_adapter_not_declared_thread_safe(spawn, adapter: str, how: str) -> None:
    c = spawn(adapter, extra_args=["--profile", "thread"], read_hello=False)
    e = startup_error(c)
    assert e.python_type == "ThreadSafetyError"
    assert e.message.startswith(f"cannot run adapter {adapter!r}: adapter class {adapter} {how}")
    assert "set __thread_safe__ = true" in e.message.lower() and "process profile" in e.message
    assert e.details["reason"] == "not_thread_safe" and e.details["adapter"] == adapter
    assert e.details["class"] == adapter and e.details["module"] == "snakepit_bridge.thread_safety_checker"
    assert f"ThreadSafetyError: adapter class {adapter}" in c.stderr_text()


def test_undeclared_adapter_still_runs_in_the_process_profile(spawn) -> None:
    c = spawn("threaded_adapter.ExplicitlyUnsafeAdapter")
    assert c.call("noop") is None


def test_is_thread_safe_counts_inherited_declarations() -> None:
    from threaded_adapter import BadCounterAdapter, ExplicitlyUnsafeAdapter, FailingInitAdapter

    assert is_thread_safe(ThreadSafeAdapter) and is_thread_safe(FailingInitAdapter)  # inherited
    assert is_thread_safe(BadCounterAdapter()) and not is_thread_safe(ExplicitlyUnsafeAdapter)
    assert not is_thread_safe(BaseAdapter) and not is_thread_safe(object)


def test_failing_initialize_of_the_shared_instance_is_a_startup_failure(spawn) -> None:
    c = spawn("threaded_adapter.FailingInitAdapter", extra_args=["--profile", "thread"], read_hello=False)
    e = startup_error(c)
    assert e.python_type == "RuntimeError"
    assert e.message == "failed to start adapter 'threaded_adapter.FailingInitAdapter': no model today"


def test_shared_instance_lifecycle(spawn) -> None:
    c = spawn("threaded_adapter.LifecycleAdapter", extra_args=THREADS_8)
    # __init__ and initialize() ran once, at start-up; their telemetry follows the Hello.
    early = [c.recv(), c.recv()]
    assert [(f.id, f.telemetry.name) for f in early] == [(0, "test.init"), (0, "test.initialize")]
    assert early[1].telemetry.measurements["initialized"] == 1
    for n in range(1, 4):
        assert c.call("state", session_id="s1") == {
            "instance": 1,
            "initialized": 1,
            "requests": n,
            "released": [],
            "instances": 1,
        }
    # A release hook that is a plain method runs on the shared instance.
    c.send(_frames.release_session(50, "s1"))
    assert c.reply(50).result.value.WhichOneof("kind") == "null"
    assert c.call("state")["released"] == ["s1"]
    # cleanup() runs once, at shutdown.
    c.send(_frames.shutdown(51, grace_ms=1000))
    f = c.recv()
    assert (f.id, f.telemetry.name) == (0, "test.cleanup")
    assert f.telemetry.measurements["requests"] == 4
    with pytest.raises(EOFError):
        c.recv()
    assert c.wait_exit() == 0


def test_cleanup_of_the_shared_instance_runs_when_the_host_goes_away(spawn) -> None:
    c = spawn("threaded_adapter.LifecycleAdapter", extra_args=THREADS_8)
    c.recv(), c.recv()
    c.sock.shutdown(socket.SHUT_WR)
    f = c.recv()
    assert (f.id, f.telemetry.name) == (0, "test.cleanup")
    assert c.wait_exit() == 0


def test_thread_safe_adapter_in_the_process_profile_gets_an_instance_per_request(spawn) -> None:
    c = spawn("threaded_adapter.LifecycleAdapter")
    firsts = []
    for _ in range(2):
        fid = c.execute("state")
        events, final = until_final(c, fid)
        # Per request: __init__ and initialize() run inside the request.
        assert [(f.id, f.telemetry.name) for f in events[:2]] == [(fid, "test.init"), (fid, "test.initialize")]
        assert events[2].telemetry.name == "test.cleanup" and events[2].id == fid
        firsts.append(result(final))
    assert firsts[1]["instance"] == firsts[0]["instance"] + 1
    assert all(r["requests"] == 1 and r["initialized"] == 1 for r in firsts)


def test_session_context_of_the_shared_instance_is_per_request(mux) -> None:
    m = mux("threaded_adapter.LifecycleAdapter", *THREADS_8)
    futures = [m.submit("session_twice", session_id=sid, parties=3) for sid in ("a", "b", "c")]
    got = [result(f.result(timeout=5)) for f in futures]
    assert got == [["a", "a"], ["b", "b"], ["c", "c"]]


def test_thread_profile_runs_8_requests_at_once(spawn) -> None:
    c = spawn("threaded_adapter.TracedAdapter", extra_args=THREADS_8)
    t0 = time.monotonic()
    ids = [c.execute("sleep", ms=100) for _ in range(8)]
    got = {c.recv().id for _ in ids}
    elapsed = time.monotonic() - t0
    assert got == set(ids)
    assert elapsed < 0.45, f"8 x 100 ms sleeps on 8 threads took {elapsed:.3f}s"


# ---------------------------------------------------- ThreadSafeAdapter API


def test_thread_local_helpers() -> None:
    a, b = ThreadSafeAdapter(), ThreadSafeAdapter()
    a.set_thread_local("cache", {"k": 1})
    a.set_thread_local("other", 2)
    assert a.get_thread_local("cache") == {"k": 1} and b.get_thread_local("cache") is None
    seen: list[Any] = []

    def other_thread() -> None:
        seen.append(a.get_thread_local("cache", "default"))
        a.set_thread_local("cache", "theirs")
        seen.append(a.get_thread_local("cache"))

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert seen == ["default", "theirs"]
    assert a.get_thread_local("cache") == {"k": 1}
    a.clear_thread_local("cache")
    assert a.get_thread_local("cache") is None and a.get_thread_local("other") == 2
    a.clear_thread_local("missing")
    a.clear_thread_local()
    assert a.get_thread_local("other") is None


def test_acquire_lock_is_reentrant_and_works_without_super_init() -> None:
    class NoSuper(ThreadSafeAdapter):
        def __init__(self) -> None:  # forgets super().__init__()
            self.n = 0

        @thread_safe_method
        def outer(self) -> int:
            with self.acquire_lock():
                return self.inner()

        @thread_safe_method
        def inner(self) -> int:
            with self.acquire_lock():
                self.n += 1
                return self.n

    a = NoSuper()
    assert a.outer() == 1
    lock = a.acquire_lock()
    assert lock is a.acquire_lock()
    got: list[bool] = []
    with a.acquire_lock():
        t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.05)))
        t.start()
        t.join()
    assert got == [False]  # held by this thread, so another cannot take it
    assert a.get_stats_dict()["requests_by_method"] == {"outer": 1, "inner": 1}


def test_thread_safe_method_composes_with_tool_in_either_order() -> None:
    from threaded_adapter import LifecycleAdapter

    tools = {t.name: t for t in LifecycleAdapter.get_tools()}
    for name in ("state", "session_twice"):
        assert getattr(tools[name].function, "__thread_safe__", False) is True
    assert tools["state"].description.startswith("Count this request")
    assert tools["session_twice"].description.startswith("Read the session id")
    a = LifecycleAdapter()
    a.state()
    assert a.get_stats_dict()["requests_by_method"] == {"state": 1}


def test_thread_safe_method_over_the_wire_counts_both_orders(spawn) -> None:
    c = spawn("threaded_adapter.LifecycleAdapter", extra_args=THREADS_8)
    c.recv(), c.recv()
    c.call("state")
    c.call("session_twice", parties=1)
    stats = c.call("stats")
    assert stats["requests_by_method"] == {"state": 1, "session_twice": 1}
    assert stats["total_requests"] == 2 and stats["adapter_class"] == "LifecycleAdapter"


def test_thread_safe_method_on_async_and_generator_methods() -> None:
    import asyncio

    class Kinds(ThreadSafeAdapter):
        @thread_safe_method
        async def coro(self, x: int) -> int:
            await asyncio.sleep(0)
            return x * 2

        @thread_safe_method
        def gen(self, n: int):
            yield from range(n)

        @thread_safe_method
        async def agen(self, n: int):
            for i in range(n):
                yield i

        @thread_safe_method
        def boom(self) -> None:
            raise ValueError("boom")

    a = Kinds()
    assert asyncio.run(a.coro(2)) == 4
    assert list(a.gen(3)) == [0, 1, 2]

    async def collect() -> list[int]:
        return [i async for i in a.agen(2)]

    assert asyncio.run(collect()) == [0, 1]
    with pytest.raises(ValueError):
        a.boom()
    stats = a.get_stats_dict()
    assert stats["requests_by_method"] == {"coro": 1, "gen": 1, "agen": 1, "boom": 1}
    assert stats["errors"] == 1 and stats["active_requests"] == 0


# ------------------------------------------------------------ the checker


def test_checker_flags_unlocked_assignment_in_process() -> None:
    from threaded_adapter import BadCounterAdapter

    adapter = BadCounterAdapter()
    checker = ThreadSafetyChecker(enabled=True)
    try:
        with pytest.warns(ThreadSafetyWarning, match="accessed by 2 different threads concurrently"):
            with ThreadPoolExecutor(max_workers=2) as executor:
                list(executor.map(lambda _: adapter.bump(parties=2), range(2)))
            with ThreadPoolExecutor(max_workers=2) as executor:
                list(executor.map(lambda _: adapter.bump_locked(parties=2), range(2)))
        report = checker.get_report()
    finally:
        checker.disable()
    assert [(i["kind"], i["method"], i["attribute"], i["threads"]) for i in report["issues"]] == [
        ("unlocked_assignment", "bump", "counter", 2)
    ]
    assert report["concurrent_accesses"] == {"bump": 2, "bump_locked": 2}
    assert report["warnings"][0].startswith("\u26a0\ufe0f THREAD SAFETY: Method 'bump' accessed by 2 different")


def test_strict_checker_raises_in_the_offending_method() -> None:
    import threaded_adapter
    from threaded_adapter import BadCounterAdapter

    adapter = BadCounterAdapter()
    errors: list[BaseException] = []
    out = threaded_adapter._barrier("bump-out", 2)

    def call() -> None:
        try:
            adapter.bump(parties=2)
        except ThreadSafetyError as e:
            errors.append(e)
            out.abort()  # the other call stops waiting for this one
        except threading.BrokenBarrierError as e:
            errors.append(e)

    with ThreadSafetyChecker(strict_mode=True):
        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(type(e).__name__ for e in errors) == ["BrokenBarrierError", "ThreadSafetyError"]
    assert adapter.get_stats_dict()["active_requests"] == 0


def test_checker_flags_concurrent_use_of_an_undeclared_adapter() -> None:
    from threaded_adapter import UndeclaredAdapter

    adapter = UndeclaredAdapter()
    seen = []
    checker = ThreadSafetyChecker(on_warning=seen.append, issue_python_warnings=False)

    def run() -> None:
        with checker.track_execution("work", adapter=adapter):
            adapter.work(2)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    checker.disable()
    assert [i.kind for i in seen] == ["undeclared_adapter"]
    assert "Adapter threaded_adapter.UndeclaredAdapter does not declare thread safety" in seen[0].message


def test_checker_library_checks() -> None:
    import sqlite3

    from threaded_adapter import BadCounterAdapter

    checker = ThreadSafetyChecker(issue_python_warnings=False)
    try:
        assert checker.check_library_safety(["numpy", "polars"]) == []
        msgs = checker.check_library_safety(["pandas.core.frame", "numpy"], adapter=BadCounterAdapter())
        assert checker.check_library_safety(["pandas"]) == []  # reported once
    finally:
        checker.disable()
    assert sqlite3 is not None
    assert msgs[0].startswith("\u26a0\ufe0f THREAD SAFETY: Unsafe library 'pandas' detected")
    assert "keeps a sqlite3 Connection in self.db" in msgs[1]
    disabled = ThreadSafetyChecker(enabled=False)
    assert disabled.check_library_safety(["pandas"]) == [] and disabled.get_report()["warnings"] == []


def test_checker_warnings_arrive_as_telemetry(mux) -> None:
    m = mux("threaded_adapter.BadCounterAdapter", "--profile", "thread", "--threads", "2", "--thread-safety-check")
    # At start-up (frame id 0): sqlite3 is imported, and the adapter keeps a connection.
    libs = m.wait_telemetry(lambda f: f.telemetry.name == WARNING and meta(f)["kind"] == "unsafe_library", 2)
    assert all(f.id == 0 for f in libs)
    assert {meta(f).get("attribute", "") for f in libs} == {"", "db"}
    futures = [m.submit("bump", parties=2) for _ in range(2)]
    ids = {f.result(timeout=5).id for f in futures}
    (w,) = m.wait_telemetry(lambda f: f.telemetry.name == WARNING and meta(f)["kind"] == "unlocked_assignment")
    assert w.id in ids
    md = meta(w)
    assert md["adapter"] == "threaded_adapter.BadCounterAdapter" and md["method"] == "bump"
    assert md["attribute"] == "counter" and "accessed by 2 different threads concurrently" in md["message"]
    assert w.telemetry.measurements["threads"] == 2
    for f in [m.submit("bump_locked", parties=2) for _ in range(2)]:
        assert f.result(timeout=5).WhichOneof("kind") == "result"
    assert [meta(f)["method"] for f in m.telemetry if meta(f).get("kind") == "unlocked_assignment"] == ["bump"]


def test_no_checker_no_warnings(mux) -> None:
    m = mux("threaded_adapter.BadCounterAdapter", "--profile", "thread", "--threads", "2")
    for f in [m.submit("bump", parties=2) for _ in range(2)]:
        assert f.result(timeout=5).WhichOneof("kind") == "result"
    assert m.call("bump", parties=1) == 3
    assert m.telemetry == []


# -------------------------------------------------------------- telemetry


@pytest.mark.parametrize("profile", [[], THREADS_8])
def test_span_and_emit_frames(spawn, profile: list[str]) -> None:
    c = spawn("threaded_adapter.TracedAdapter", extra_args=profile)
    fid = c.execute("traced", metadata={"traceparent": TRACEPARENT, "tracestate": "k=v", "other": "x"})
    events, final = until_final(c, fid)
    assert result(final) == {"traceparent": TRACEPARENT, "tracestate": "k=v"}
    assert [(f.id, f.telemetry.name) for f in events] == [(fid, "evt"), (fid, "inner"), (fid, "outer")]
    evt, inner, outer = events
    assert dict(evt.telemetry.measurements) == {"x": 1.5, "flag": 1.0}
    assert evt.telemetry.duration_nanos == 0
    em = meta(evt)
    assert em["tag"] == "t" and em["obj"].startswith("<object object")
    assert em["traceparent"] == TRACEPARENT and em["tracestate"] == "k=v" and "other" not in em
    im, om = meta(inner), meta(outer)
    assert re.fullmatch(r"[0-9a-f]{16}", om["span_id"]) and re.fullmatch(r"[0-9a-f]{16}", im["span_id"])
    assert im["parent_span_id"] == om["span_id"]
    assert om["parent_span_id"] == "b7ad6b7169203331"  # the request's span
    assert om["k"] == "v" and om["status"] == "ok" and om["traceparent"] == TRACEPARENT
    assert dict(outer.telemetry.measurements) == {"items": 3.0}
    assert 0 < inner.telemetry.duration_nanos <= outer.telemetry.duration_nanos


def test_otel_style_spans_are_telemetry_spans_and_inject_their_context(spawn) -> None:
    c = spawn("threaded_adapter.TracedAdapter")
    fid = c.execute("otel_traced", metadata={"traceparent": TRACEPARENT})
    events, final = until_final(c, fid)
    (span,) = events
    m = meta(span)
    assert span.telemetry.name == "otel.work" and span.telemetry.duration_nanos > 0
    assert (m["otel.scope"], m["model"], m["ok"]) == ("tests", "m", "yes")
    assert dict(span.telemetry.measurements) == {"rows": 2.0}
    assert m["parent_span_id"] == "b7ad6b7169203331"
    # Inside the span, an outgoing call would carry the span as its parent.
    trace_id = TRACEPARENT.split("-")[1]
    assert result(final) == {"traceparent": f"00-{trace_id}-{m['span_id']}-01"}


def test_a_traced_request_reports_the_workers_timing_and_an_untraced_one_does_not(spawn) -> None:
    c = spawn("threaded_adapter.TracedAdapter")
    fid = c.execute("otel_traced", metadata={"traceparent": TRACEPARENT})
    _, final = until_final(c, fid)
    timing = final.result.timing
    assert final.result.HasField("timing") and timing.run_nanos > 0 and timing.encode_nanos > 0
    fid = c.execute("otel_traced")
    _, final = until_final(c, fid)
    assert not final.result.HasField("timing")


def test_span_of_a_failing_block(spawn) -> None:
    c = spawn("threaded_adapter.TracedAdapter")
    fid = c.execute("traced", fail=True)
    events, final = until_final(c, fid)
    assert final.error.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and final.error.message == "span failed"
    om = meta(events[-1])
    assert events[-1].telemetry.name == "outer"
    assert (om["status"], om["error_type"], om["error_message"]) == ("error", "ValueError", "span failed")
    assert "traceparent" not in om and "parent_span_id" not in om  # the request had no trace context


def test_telemetry_from_tasks_threads_and_streams(spawn) -> None:
    c = spawn("threaded_adapter.TracedAdapter")
    fid = c.execute("traced_async")
    events, final = until_final(c, fid)
    assert result(final) == "ok" and [(f.id, f.telemetry.name) for f in events] == [(fid, "async.evt")]
    fid = c.execute("from_threads")
    events, final = until_final(c, fid)
    # A thread given the request's context reports under the request; a bare thread under 0.
    assert [(f.id, f.telemetry.name) for f in events] == [(fid, "thread.copied"), (0, "thread.bare")]
    fid = c.execute("traced_stream", n=2, stream=True, window=8)
    frames = [c.recv() for _ in range(4)]
    assert [(f.id, f.WhichOneof("kind")) for f in frames] == [(fid, "telemetry"), (fid, "chunk")] * 2


def test_telemetry_outside_a_worker_does_nothing() -> None:
    assert telemetry.current_trace_context() == {}
    telemetry.emit("x", {"n": 1}, {"k": "v"})
    with telemetry.span("s", {"k": 1}) as s:
        s.set("more", True)
        s.measure("m", 2)
        with telemetry.span("nested") as inner:
            assert inner.parent_span_id == s.span_id
    with pytest.raises(TypeError, match="must be a number"):
        telemetry.emit("x", {"n": "one"})
    with pytest.raises(KeyError):
        with telemetry.span("failing"):
            raise KeyError("propagates")


# -------------------------------------------------------- parameter types


def test_parameter_types_of_the_reference_table(spawn) -> None:
    c = spawn("threaded_adapter.TypedAdapter")
    specs = {t.name: t for t in c.hello.hello.tools}
    assert [(p.name, p.type, p.required) for p in specs["typed"].parameters] == [
        ("ints", "list", True),
        ("maybe_list", "list", False),
        ("union_list", "list", False),
        ("mapping", "dict", False),
        ("arr", "ndarray", False),
        ("blob", "bytes", False),
        ("name", "str", False),
    ]
    assert [(p.name, p.type) for p in specs["text_annotated"].parameters] == [
        ("amount", "any"),
        ("count", "int"),
        ("maybe", "int"),
        ("xs", "list"),
    ]
    assert c.call("typed", ints=[1, 2], maybe_list=None, name=None, arr=[1.0, 2.0]) == {
        "ints": "list",
        "maybe_list": "NoneType",
        "union_list": "NoneType",
        "mapping": "NoneType",
        "arr": "ndarray",
        "blob": "bytes",
        "name": "NoneType",
    }
    for kwargs, parameter, expected in [
        ({"ints": "x"}, "ints", "list"),
        ({"ints": [1], "union_list": "x"}, "union_list", "list"),
        ({"ints": [1], "mapping": [1]}, "mapping", "dict"),
        ({"ints": [1], "name": 1}, "name", "str"),
        ({"ints": [1], "blob": "text"}, "blob", "bytes"),
    ]:
        e = c.call_frame("typed", **kwargs).error
        assert (e.kind, e.parameter, e.details["expected"]) == (pb.ERROR_KIND_BAD_ARGUMENTS, parameter, expected)
    assert c.call("text_annotated", amount="1.5", count=2, maybe=None, xs=None) == "ok"
    for kwargs, parameter in [({"count": "2"}, "count"), ({"count": 2, "xs": "s"}, "xs")]:
        e = c.call_frame("text_annotated", amount=1, **kwargs).error
        assert (e.kind, e.parameter) == (pb.ERROR_KIND_BAD_ARGUMENTS, parameter)
