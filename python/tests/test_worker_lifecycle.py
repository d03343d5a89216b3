"""The per-request adapter lifecycle of the reference: new instance, context, initialize, tool, cleanup."""

from __future__ import annotations

from snakepit_bridge._proto import snakepit_pb2 as pb
from wire_client import WorkerClient


def test_new_instance_per_request_with_module_cache(spawn) -> None:
    c: WorkerClient = spawn("example_adapter.ExampleAdapter")
    first = c.call("whoami", session_id="s")
    second = c.call("whoami", session_id="s")
    assert second["instance"] == first["instance"] + 1
    assert first["calls_on_this_instance"] == second["calls_on_this_instance"] == 1
    assert first["model_loaded"] and second["model_loaded"]


def test_context_initialize_and_cleanup_order(spawn) -> None:
    c: WorkerClient = spawn("example_adapter.ExampleAdapter")
    c.call("events", clear=True)
    assert c.call("echo", message="x") == "Echo: x"
    log = c.call("events")
    # log[0] is the cleanup of the events() call that cleared the log
    n = log[1][1]
    assert log[1:4] == [["ctx", n], ["initialize", n], ["cleanup", n]]


def test_cleanup_runs_on_error(spawn) -> None:
    c: WorkerClient = spawn("example_adapter.ExampleAdapter")
    c.call("events", clear=True)
    e = c.call_frame("explode").error
    assert e.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and e.python_type == "RuntimeError"
    log = c.call("events")
    n = log[1][1]
    assert log[1:4] == [["ctx", n], ["initialize", n], ["cleanup", n]]


def test_async_initialize_and_cleanup(spawn) -> None:
    c: WorkerClient = spawn("example_adapter.AsyncLifecycleAdapter")
    assert c.call("hello", name="x") == "hello x"
    log = c.call("events")
    assert log[:2] == [["async-initialize"], ["async-cleanup"]]
