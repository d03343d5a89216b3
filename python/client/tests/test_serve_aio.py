"""The asyncio client's main paths through a real ``snakepit serve``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import Serve, read_text, wait_for

import snakepit_client as sp

pytestmark = pytest.mark.server


def run(serve: Serve, body: Callable[[sp.AsyncClient], Awaitable[Any]], **options: Any) -> Any:
    async def main() -> Any:
        async with sp.AsyncClient(serve.address, token=serve.token, timeout=30, **options) as client:
            return await body(client)

    return asyncio.run(main())


def test_execute_stream_and_errors(serve: Serve) -> None:
    async def body(client: sp.AsyncClient) -> None:
        assert await client.execute("add", a=2, b=3) == 5
        assert [i["step"] async for i in client.stream("progress", steps=3, delay_ms=0)] == [1, 2, 3]
        with pytest.raises(sp.PythonError) as err:
            await client.execute("fail", message="boom")
        assert (err.value.kind, err.value.python_type) == ("python_exception", "ValueError")
        with pytest.raises(sp.UnknownToolError):
            async for _ in client.stream("no_such_stream"):
                pass
        status = await client.status()
        assert status["default"]["workers_up"] == 2
        # Many calls at once on one channel.
        sums = await asyncio.gather(*(client.execute("add", a=i, b=1) for i in range(50)))
        assert sums == [i + 1 for i in range(50)]

    run(serve, body)


def test_sessions_ffi_and_refs(serve: Serve) -> None:
    async def body(client: sp.AsyncClient) -> None:
        assert await client.call("math", "sqrt", 16) == 4.0
        async with client.session(affinity="strict_queue") as s:
            assert [await s.execute("tally") for _ in range(3)] == [1, 2, 3]
            assert (await s.info())["affinity"] == "strict_queue"
            path = await s.call("pathlib", "PurePosixPath", "/tmp/x.txt")
            assert await s.attr(path, "name") == "x.txt"
            assert await s.call("builtins", "str", await s.method(path, "with_suffix", ".csv")) == "/tmp/x.csv"
            ns = await s.call_class("types", "SimpleNamespace")
            await s.set_attr(ns, "v", 7)
            assert await s.attr(ns, "v") == 7
            await s.release_ref(path)
            with pytest.raises(sp.RefNotFoundError):
                await s.attr(path, "name")
            it = await s.call("builtins", "iter", [1, 2, 3])
            assert await s.next(it, 2) == [1, 2]
            assert [x async for x in it] == [3]
            assert [x async for x in s.call_stream("builtins", "range", 3)] == [0, 1, 2]
        with pytest.raises(sp.SessionNotFoundError):
            await s.info()
        opened = await client.session(pool="test")
        assert (await opened.execute("whoami"))["session_id"] == opened.id
        await opened.release()
        # The client's own session, for FFI calls on the client itself.
        ref = await client.call("pathlib", "PurePosixPath", "/a/b")
        assert await client.attr(ref, "name") == "b"
        assert [x async for x in client.call_stream("builtins", "range", 2)] == [0, 1]
        counting = await client.call("itertools", "count")
        assert await client.next(counting, 2) == [0, 1]
        await client.release_ref(counting)
        with pytest.raises(sp.RefNotFoundError):
            await client.next(counting, 1)
        assert await client.get("math", "e") == pytest.approx(2.718281828)
        dq = await client.call_class("collections", "deque", [3, 1, 1])
        assert await client.method(dq, "count", 1) == 2
        ns = await client.call_class("types", "SimpleNamespace")
        await client.set_attr(ns, "name", "n")
        assert await client.attr(ns, "name") == "n"

    run(serve, body)


def test_variables_and_watches(serve: Serve) -> None:
    async def body(client: sp.AsyncClient) -> None:
        async with client.session(pool="test", affinity="strict_queue") as s:
            await s.register_variable("count", "integer", 0, min=0)
            watch = s.watch_variables(include_initial=True)
            first = await anext(watch)
            assert (first.name, first.new_value, first.source) == ("count", 0, "initial")
            await s.set_variable("count", 3)
            assert (await anext(watch)).new_value == 3
            assert await s.execute("bump", name="count") == 4
            assert (await anext(watch)).new_value == 4
            await watch.aclose()
            assert await s.list_variables() == {"count": 4}
            assert (await s.get_variable_info("count")).version >= 2
            with pytest.raises(sp.VariableError):
                await s.set_variable("count", -1)

    run(serve, body)


def test_cancelling_a_stream_and_a_deadline_reach_the_worker(serve: Serve, files: Path) -> None:
    exit_marker, cancelled = files / "exit", files / "cancelled"

    async def body(client: sp.AsyncClient) -> None:
        async with client.stream("produce", pool="test", n=100_000, exit_marker=str(exit_marker)) as items:
            assert (await anext(items))["i"] == 0
        with pytest.raises(sp.DeadlineExceeded) as err:
            await client.execute("hold", pool="test", ms=30_000, marker=str(cancelled), timeout=0.5)
        assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED

    run(serve, body)
    wait_for(lambda: read_text(exit_marker) == "GeneratorExit", what="GeneratorExit after aclose")
    wait_for(lambda: read_text(cancelled) == "cancelled", what="the Cancel after the deadline")


def test_a_wrong_token_is_unauthenticated(serve: Serve) -> None:
    async def body(client: sp.AsyncClient) -> None:
        with pytest.raises(sp.UnauthenticatedError) as err:
            await client.execute("add", a=1, b=2)
        assert err.value.kind == "unauthenticated"

    async def main() -> None:
        async with sp.AsyncClient(serve.address, token="wrong", timeout=10) as client:
            await body(client)

    asyncio.run(main())
