"""The decorator and adapter surface of the adapter and thread-safety guides:
@tool("description"), BaseAdapter.session_id, SessionContext as a context
manager, ThreadLocalStorage, RequestTracker, the thread-safe adapter's
tracker and statistics, and the thread-safety checker's module helpers."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import snakepit_bridge
from snakepit_bridge import (
    BaseAdapter,
    NotThreadSafeError,
    RequestTracker,
    SessionContext,
    ThreadLocalStorage,
    ThreadSafeAdapter,
    ThreadSafetyError,
    require_thread_safe,
    thread_safe_method,
    tool,
    validate_thread_safety,
)
from snakepit_bridge import thread_safety_checker as tsc
from wire_client import WorkerClient

# ------------------------------------------------------------------ @tool


def test_tool_takes_its_description_positionally() -> None:
    class A(BaseAdapter):
        @tool("Add two numbers together")
        def add(self, a: float, b: float) -> float:
            return a + b

        @tool("Stream numbers", supports_streaming=True, required_variables=["k"])
        def numbers(self, n: int = 2) -> Any:
            return list(range(n))

        @tool
        def bare(self) -> None:
            """From the docstring."""

        @tool(description="By keyword")
        def keyword(self) -> None:
            pass

    tools = {t.name: t for t in A.get_tools()}
    assert tools["add"].description == "Add two numbers together" and not tools["add"].supports_streaming
    assert tools["numbers"].description == "Stream numbers" and tools["numbers"].supports_streaming
    assert tools["numbers"].required_variables == ("k",)
    assert tools["bare"].description == "From the docstring."
    assert tools["keyword"].description == "By keyword"
    assert A().add(1, 2) == 3  # the method itself is unchanged


def test_tool_refuses_two_descriptions() -> None:
    with pytest.raises(TypeError, match="description"):
        tool("one", description="two")


# ------------------------------------------------------------ session_id


def test_session_id_reads_the_session_context() -> None:
    a = BaseAdapter()
    assert a.session_id == ""
    a.set_session_context(SessionContext("sess-42"))
    assert a.session_id == "sess-42"
    a.set_session_context(SessionContext("other"))
    assert a.session_id == "other"
    a.session_id = "mine"  # an adapter that keeps its own value may
    assert a.session_id == "mine"
    assert BaseAdapter().session_id == ""


def test_session_id_of_a_thread_safe_adapter() -> None:
    class T(ThreadSafeAdapter):
        pass

    t = T()
    t.set_session_context(SessionContext("s-t"))
    assert t.session_id == "s-t"


def test_session_id_through_a_worker(spawn: Callable[..., WorkerClient]) -> None:
    c = spawn("snakepit_bridge.adapters.template.TemplateAdapter")
    assert c.call("whoami", session_id="abc")["session_id"] == "abc"
    assert c.call("whoami")["session_id"] == ""


# ------------------------------------------------------------ SessionContext


def test_session_context_as_a_context_manager_cleans_up() -> None:
    with SessionContext("s-1", {"traceparent": "x"}) as ctx:
        assert isinstance(ctx, SessionContext) and ctx.session_id == "s-1"
        ctx.host_tools = {"validate": {"name": "validate"}}
        first = ctx.request_metadata
        assert first == {"traceparent": "x"} and ctx.elixir_tools == {"validate": {"name": "validate"}}
    # cleanup() forgot the cached tool list and metadata dict; no host: the list is empty again.
    assert ctx.host_tools == {}
    again = ctx.request_metadata
    assert again == {"traceparent": "x"} and again is not first
    ctx.cleanup()
    ctx.cleanup()  # more than once is fine


def test_session_context_cleanup_runs_when_the_block_raises() -> None:
    ctx = SessionContext("s-2")
    ctx.host_tools = {"t": {}}
    with pytest.raises(KeyError):
        with ctx:
            raise KeyError("boom")
    assert ctx.host_tools == {}


# ------------------------------------------------------------ ThreadLocalStorage


def test_thread_local_storage_is_private_to_each_thread() -> None:
    store = ThreadLocalStorage()
    store.set("k", "main")
    seen: dict[str, Any] = {}

    def other() -> None:
        seen["before"] = store.get("k", "none")
        store.set("k", "other")
        seen["after"] = store.get("k")

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == {"before": "none", "after": "other"}
    assert store.get("k") == "main"
    store.delete("k")
    store.delete("never-set")
    assert store.get("k") is None
    store.set("a", 1)
    store.set("b", 2)
    store.clear()
    assert store.get("a") is None and store.get("b", 0) == 0


# ------------------------------------------------------------ RequestTracker


def test_request_tracker_counts_by_thread() -> None:
    tracker = RequestTracker()
    assert tracker.start_request() == 1
    assert tracker.start_request() == 2
    assert tracker.get_stats() == {
        "total_requests": 2,
        "active_requests": 2,
        "total_active_requests": 2,
        "active_threads": 1,
        "threads_seen": 1,
    }
    tracker.end_request()
    assert tracker.start_request(thread_id=12345) == 3
    stats = tracker.get_stats()
    assert stats["active_requests"] == 2 and stats["active_threads"] == 2 and stats["threads_seen"] == 2
    tracker.end_request(12345)
    tracker.end_request()
    tracker.end_request()  # more ends than starts stay at zero
    assert tracker.get_stats()["active_requests"] == 0 and tracker.active_requests == {}
    assert tracker.requests_by_thread[threading.get_ident()] == 2


# ------------------------------------------------------------ ThreadSafeAdapter


class Counting(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    @thread_safe_method
    @tool("Count one")
    def bump(self) -> int:
        with self.acquire_lock():
            self.count += 1
            return self.count

    @thread_safe_method
    def broken(self) -> None:
        raise RuntimeError("no")


def test_tracker_lock_and_thread_local_attributes() -> None:
    a = Counting()
    assert a._lock is a.acquire_lock()
    a.set_thread_local("x", 1)
    assert a._thread_local.get("x") == 1
    a._thread_local.set("y", 2)
    assert a.get_thread_local("y") == 2
    assert isinstance(a._tracker, RequestTracker)

    with ThreadPoolExecutor(max_workers=6) as ex:
        list(ex.map(lambda _: a.bump(), range(60)))
    assert a.count == 60
    tracker = a._tracker.get_stats()
    assert tracker["total_requests"] == 60 and tracker["active_requests"] == 0
    assert 1 <= tracker["threads_seen"] <= 6


def test_get_stats_and_track_request() -> None:
    a = Counting()
    a.bump()
    with a.track_request() as n1:
        inside = a.get_stats()
    with a.track_request("load") as n2:
        pass
    with pytest.raises(RuntimeError):
        a.broken()
    with pytest.raises(ValueError):
        with a.track_request():
            raise ValueError("x")
    assert (n1, n2) == (2, 3)
    assert inside["active_requests"] == 1 and inside["tracker"]["active_requests"] == 1
    stats = a.get_stats()
    assert stats["adapter_class"] == "Counting" and stats["thread_safe"] is True
    assert stats["total_requests"] == 5 and stats["errors"] == 2
    assert stats["requests_by_method"] == {"bump": 1, "track_request": 2, "load": 1, "broken": 1}
    assert stats["tracker"] == a._tracker.get_stats()
    assert stats["thread_utilization"] == {threading.current_thread().name: 5}


def test_attributes_exist_without_super_init() -> None:
    class Forgetful(ThreadSafeAdapter):
        def __init__(self) -> None:
            self.x = 1

        @thread_safe_method
        def m(self) -> int:
            return self.x

    f = Forgetful()
    assert f.m() == 1
    assert f._tracker.get_stats()["total_requests"] == 1
    assert f._lock is f.acquire_lock() and f._thread_local.get("nothing") is None
    with pytest.raises(AttributeError):
        f.missing_attribute  # noqa: B018


def test_require_thread_safe_and_validate() -> None:
    class Unsafe(BaseAdapter):
        pass

    class Declined(ThreadSafeAdapter):
        __thread_safe__ = False

    @require_thread_safe
    def serve(adapter: Any, x: int) -> int:
        return x * 2

    assert serve(Counting(), 4) == 8
    assert serve(Counting, 1) == 2
    for bad in (Unsafe(), Declined()):
        with pytest.raises(NotThreadSafeError) as e:
            serve(bad, 1)
        assert isinstance(e.value, ValueError) and isinstance(e.value, ThreadSafetyError)
    assert "declares __thread_safe__ = False" in str(pytest.raises(NotThreadSafeError, serve, Declined(), 1).value)
    assert validate_thread_safety(Counting) and validate_thread_safety(Counting())
    assert not validate_thread_safety(Unsafe) and not validate_thread_safety(Declined)


# ------------------------------------------------------------ checker helpers


@pytest.fixture
def global_checker() -> Iterator[tsc.ThreadSafetyChecker]:
    yield tsc.get_global_checker()
    tsc.disable_checking()
    tsc.get_global_checker().strict_mode = False
    tsc.get_global_checker().reset()


def test_global_checker_switches(global_checker: tsc.ThreadSafetyChecker) -> None:
    assert not global_checker.enabled
    assert tsc.enable_checking() is global_checker is tsc.get_global_checker()
    assert global_checker.enabled and not global_checker.strict_mode
    assert global_checker in tsc.active_checkers()
    tsc.disable_checking()
    assert not global_checker.enabled and global_checker not in tsc.active_checkers()
    tsc.enable_checking(strict_mode=True)
    assert global_checker.enabled and global_checker.strict_mode


def test_check_thread_safe_tracks_calls_while_enabled(global_checker: tsc.ThreadSafetyChecker) -> None:
    @tsc.check_thread_safe
    def work(x: int) -> int:
        return x + 1

    assert work(1) == 2  # disabled: runs, nothing recorded
    assert global_checker.get_report()["total_methods_tracked"] == 0
    tsc.enable_checking()
    with ThreadPoolExecutor(max_workers=4) as ex:
        assert sorted(ex.map(work, range(20))) == list(range(1, 21))
    report = global_checker.get_report()
    (name,) = report["methods"]
    assert name.endswith("work") and report["methods"][name]["calls"] == 20
    out = io.StringIO()
    tsc.print_thread_safety_report(out)
    text = out.getvalue()
    assert "Thread safety report" in text and "methods tracked: 1" in text


def test_global_checker_sees_thread_safe_methods(global_checker: tsc.ThreadSafetyChecker) -> None:
    tsc.enable_checking()
    a = Counting()
    with ThreadPoolExecutor(max_workers=4) as ex:
        list(ex.map(lambda _: a.bump(), range(40)))
    report = global_checker.get_report()
    assert report["methods"]["bump"]["calls"] == 40 and report["warnings"] == []


def test_validate_adapter_and_require_adapter(global_checker: tsc.ThreadSafetyChecker) -> None:
    class Plain(BaseAdapter):
        pass

    assert tsc.validate_adapter_thread_safety(Counting) is True
    assert tsc.validate_adapter_thread_safety(Plain) is False
    tsc.enable_checking(strict_mode=True)
    with pytest.raises(NotThreadSafeError, match="Plain"):
        tsc.validate_adapter_thread_safety(Plain)

    @tsc.require_thread_safe_adapter
    def run(adapter: Any) -> str:
        return "ran"

    assert run(Counting()) == "ran"
    with pytest.raises(ValueError, match="does not declare thread safety"):
        run(Plain())


def test_check_common_pitfalls() -> None:
    class Loose(BaseAdapter):
        def __init__(self) -> None:
            super().__init__()
            self.items: list[int] = []
            self.table: dict[str, int] = {}
            self._private: list[int] = []

    found = tsc.check_common_pitfalls(Loose())
    assert any("does not declare __thread_safe__" in f for f in found)
    assert any("items, table" in f and "no lock" in f for f in found)
    assert tsc.check_common_pitfalls(Counting()) == []

    class Locked(Loose):
        __thread_safe__ = True

        def __init__(self) -> None:
            super().__init__()
            self.guard = threading.Lock()

    assert tsc.check_common_pitfalls(Locked()) == []


def test_top_level_exports_the_new_names() -> None:
    for name in (
        "NotThreadSafeError",
        "RequestTracker",
        "ThreadLocalStorage",
        "require_thread_safe",
        "validate_thread_safety",
    ):
        assert name in snakepit_bridge.__all__ and hasattr(snakepit_bridge, name)
    from snakepit_bridge.base_adapter_threaded import (  # noqa: F401
        RequestTracker as R,
        ThreadLocalStorage as L,
        require_thread_safe as r,
        validate_thread_safety as v,
    )
    from snakepit_bridge.thread_safety_checker import (  # noqa: F401
        check_thread_safe,
        disable_checking,
        enable_checking,
        get_global_checker,
    )
