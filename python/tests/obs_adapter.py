"""Adapters for tests/test_telemetry_api.py: correlation ids in tools, spans, events, logs and streams."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Iterator
from typing import Any

from snakepit_bridge import BaseAdapter, ThreadSafeAdapter, get_logger, telemetry, tool

log = get_logger("obs_adapter")
plain_log = logging.getLogger("obs_adapter.plain")

_barrier = threading.Barrier(2, timeout=5)


def _cid() -> str:
    return telemetry.get_correlation_id() or ""


class ObsAdapter(BaseAdapter):
    @tool(description="The current correlation id ('' for none)")
    def whoami(self) -> str:
        return _cid()

    @tool(description="Log one line through get_logger and one through a plain logger")
    def logs(self, msg: str) -> str:
        log.info("via get_logger: %s", msg)
        plain_log.warning("via a plain logger: %s", msg)
        log.debug("debug line: %s", msg)
        return _cid()

    @tool(description="A span around an event, all positional")
    def traced(self) -> str:
        with telemetry.span("obs.op", {"k": "v"}):
            telemetry.emit("obs.evt", {"n": 1}, {"tag": "t"})
        return _cid()

    @tool(description="Explicit correlation ids, positional and keyword")
    def explicit(self) -> list[str]:
        seen = []
        with telemetry.span("obs.given", {"k": "v"}, "span-cid"):
            seen.append(_cid())
            log.info("inside the span")
            telemetry.emit("obs.inner", {"n": 2})
        seen.append(_cid())
        telemetry.emit(event="obs.kw", measurements={"n": 3}, metadata={"m": 1}, correlation_id="kw-cid")
        with telemetry.span(operation="obs.kwspan", metadata=None, correlation_id="kwspan-cid"):
            pass
        return seen

    @tool(description="Set a correlation id and never reset it")
    def set_own(self, cid: str) -> str:
        telemetry.set_correlation_id(cid)
        log.info("own id")
        return _cid()

    @tool(description="The headers for an outgoing call")
    def headers(self) -> dict[str, str]:
        return telemetry.outgoing_metadata({"accept": "json"})

    @tool(description="The id seen by an async tool and a task it starts")
    async def async_ids(self) -> list[str]:
        async def inner() -> str:
            await asyncio.sleep(0)
            return _cid()

        return [_cid(), await asyncio.create_task(inner())]

    @tool(description="The id seen by a thread given the request's context, and by a bare thread")
    def thread_ids(self) -> list[str]:
        seen: dict[str, str] = {}

        def record(key: str) -> None:
            seen[key] = _cid()

        t1 = threading.Thread(target=contextvars.copy_context().run, args=(record, "copied"))
        t2 = threading.Thread(target=record, args=("bare",))
        for t in (t1, t2):
            t.start()
            t.join()
        return [seen["copied"], seen["bare"]]

    @tool(description="Stream the id seen by each step of a generator", supports_streaming=True)
    def stream_ids(self, n: int) -> Iterator[dict[str, Any]]:
        for i in range(n):
            log.info("step %d", i)
            yield {"data": _cid(), "is_final": i == n - 1}


class SharedObsAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    @tool(description="Wait for a second request, then report the current id")
    def paired(self) -> str:
        before = _cid()
        _barrier.wait()
        after = _cid()
        return before if before == after else f"{before}!={after}"
