"""One bad request never ends the worker: frames protobuf refuses, values that
are not UTF-8, exceptions that are not ``Exception``s, refused host calls.

Every test drives a real worker over a socketpair, and every one ends by
showing the same process still serving.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from snakepit_bridge import _frames
from snakepit_bridge._codec import decode, encode
from snakepit_bridge._proto import snakepit_pb2 as pb
from wire_client import ConcurrentClient, WorkerClient, field, varint

ADAPTER = "hostile_adapter.HostileAdapter"
PROFILES = [
    pytest.param([], id="process"),
    pytest.param(["--profile", "thread", "--threads", "4"], id="thread"),
]


def nested_list(depth: int) -> bytes:
    """The serialized Value of `depth` lists, one inside the other, around an
    int, written by hand: protobuf builds no message deeper than it decodes."""
    v = b"\x18\x02"  # Value{int: 1}
    for _ in range(depth):
        v = field(8, field(1, v))  # Value{list: ValueList{items: [v]}}
    return v


def nested_map(depth: int) -> bytes:
    v = b"\x18\x02"
    for _ in range(depth):
        entry = field(1, b"\x32\x01k") + field(2, v)  # MapEntry{key: "k", value: v}
        v = field(12, field(1, entry))  # Value{map: ValueMap{entries: [entry]}}
    return v


def raw_execute_body(fid: int, tool: str, value: bytes) -> bytes:
    """The body of an Execute frame calling `tool` with kwarg v=`value`."""
    entry = field(1, b"value") + field(2, value)  # KwargsEntry
    ex = field(1, tool.encode()) + field(4, entry)
    return b"\x08" + varint(fid) + field(10, ex)  # Frame{id, execute}


def alive(c: WorkerClient, pid: int) -> None:
    """The same worker process still answers a Ping and a normal call."""
    assert c.proc.poll() is None, f"worker exited with {c.proc.returncode}: {c.stderr_text()}"
    assert c.hello is not None and c.hello.hello.pid == pid
    c.send(_frames.ping(999_999))
    assert c.reply(999_999).WhichOneof("kind") == "pong"
    assert c.call("echo", value=[1, "two"]) == [1, "two"]


# ------------------------------------------------ 1. undecodable frames


def test_too_deep_argument_fails_only_its_request(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    pid = c.proc.pid
    # 48 lists is the deepest a frame carries; 50 is refused by protobuf on
    # the worker's side (the host refuses to send it, but a worker must not
    # depend on that).
    c.send_body(raw_execute_body(40, "echo", nested_list(48)))
    assert c.reply(40).WhichOneof("kind") == "result"
    for fid, value in ((41, nested_list(50)), (42, nested_map(40)), (43, nested_list(200))):
        c.send_body(raw_execute_body(fid, "echo", value))
        e = c.reply(fid).error
        assert e.kind == pb.ERROR_KIND_BAD_ARGUMENTS, e
        assert "lists at most 48 deep, maps 32" in e.message and "LIMIT_VALUE_WIRE_DEPTH" in e.message
        assert e.details["limit"] == str(pb.LIMIT_VALUE_WIRE_DEPTH) == "97"
    alive(c, pid)


@pytest.mark.parametrize("profile", PROFILES)
def test_too_deep_argument_leaves_concurrent_calls_alone(spawn, profile: list[str]) -> None:
    c: WorkerClient = spawn(ADAPTER, extra_args=profile)
    pid = c.proc.pid
    cc = ConcurrentClient(c)
    try:
        slow = cc.submit("sleep", ms=300)
        bad = cc.submit_raw(lambda fid: raw_execute_body(fid, "echo", nested_list(50)))
        assert bad.result(5).error.kind == pb.ERROR_KIND_BAD_ARGUMENTS
        assert decode(slow.result(5).result.value) == 300
        assert cc.call("echo", value="after") == "after"
    finally:
        cc.close()
    assert c.proc.poll() is None and c.hello is not None and c.hello.hello.pid == pid


def test_other_undecodable_frames_are_answered_or_skipped(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    pid = c.proc.pid
    bad_utf8 = b"\xff\xfe"
    # A Ping is answered, so its undecodable form gets a PROTOCOL error.
    c.send(_frames.ping(7, sent_unix_nanos=1))  # valid
    assert c.reply(7).WhichOneof("kind") == "pong"
    rs = b"\x0a" + varint(len(bad_utf8)) + bad_utf8  # ReleaseSession{session_id: not UTF-8}
    body = b"\x08\x08" + b"\x6a" + varint(len(rs)) + rs
    c.send_body(body)
    e = c.reply(8).error
    assert e.kind == pb.ERROR_KIND_PROTOCOL and "release_session" in e.message
    # A Credit is not answered: skipped, with a line on stderr.
    cr = b"\x08" + b"\xff" * 11  # a varint longer than protobuf allows
    body = b"\x08\x09" + b"\x62" + varint(len(cr)) + cr
    c.send_body(body)
    # Garbage that is no frame at all.
    for junk in (b"\xff\xff\xff", b"\x0a\x05ab", b"\x08"):
        c.send_body(junk)
    alive(c, pid)


def test_an_over_long_length_prefix_still_ends_the_worker(spawn) -> None:
    # The one thing a worker cannot survive: it can no longer find where the
    # next frame starts.
    c: WorkerClient = spawn(ADAPTER, extra_args=["--max-frame-bytes", "4096"])
    c.send_raw(struct.pack(">I", 5000) + b"x" * 16)
    assert c.wait_exit() == 2
    assert "exceeds max_frame_bytes" in c.stderr_text()


# ------------------------------------------------ 3. BaseException from tools

BASE_EXCEPTIONS = ["SystemExit", "KeyboardInterrupt", "GeneratorExit"]


def python_error(f: pb.Frame, python_type: str) -> pb.Error:
    assert f.WhichOneof("kind") == "error", f"expected an error, got {f}"
    e = f.error
    assert e.kind == pb.ERROR_KIND_PYTHON_EXCEPTION, e
    assert e.python_type == python_type, e
    assert python_type in e.traceback, e
    return e


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("kind", BASE_EXCEPTIONS)
def test_base_exceptions_from_tools_fail_only_their_request(spawn, profile: list[str], kind: str) -> None:
    c: WorkerClient = spawn(ADAPTER, extra_args=profile)
    pid = c.proc.pid
    cc = ConcurrentClient(c)
    try:
        slow = cc.submit("sleep", ms=400)
        for tool in ("raise_base", "async_raise_base"):
            # Twice each: the first run is on an executor, later ones may run
            # inline on the thread that reads the socket.
            for _ in range(2):
                python_error(cc.submit(tool, kind=kind).result(5), kind)
        assert decode(slow.result(5).result.value) == 400
        # A long call after all of it is not taken for a dead thread's.
        assert cc.call("sleep", ms=600, timeout=5) == 600
    finally:
        cc.close()
    # A stream: its first item arrives, then the error ends it.
    for _ in range(2):
        fid = c.execute("stream_raise_base", kind=kind, stream=True, window=8)
        first = c.reply(fid)
        assert first.WhichOneof("kind") == "chunk" and decode(first.chunk.value) == 1
        python_error(c.reply(fid), kind)
    alive(c, pid)


def test_system_exit_message_and_argparse(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    pid = c.proc.pid
    e = python_error(c.call_frame("raise_base", kind="SystemExit"), "SystemExit")
    assert e.message == "3"
    e = python_error(c.call_frame("raise_base", kind="KeyboardInterrupt"), "KeyboardInterrupt")
    assert e.message == "interrupted by the tool"
    e = python_error(c.call_frame("argparse_exit"), "SystemExit")
    assert e.message == "2"
    alive(c, pid)


@pytest.mark.parametrize("profile", PROFILES)
def test_system_exit_through_the_ffi(spawn, profile: list[str]) -> None:
    c: WorkerClient = spawn(ADAPTER, extra_args=profile)
    pid = c.proc.pid
    for _ in range(3):  # later runs inline
        e = python_error(c.call_frame("snakepit.ffi.call", "sys", "exit", 3), "SystemExit")
        assert e.message == "3"
    e = python_error(c.call_frame("snakepit.ffi.call", "builtins", "exit", "bye"), "SystemExit")
    assert e.message == "bye"
    assert c.call("snakepit.ffi.call", "math", "sqrt", 16) == 4.0
    alive(c, pid)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("kind", BASE_EXCEPTIONS)
def test_base_exceptions_from_session_release_hooks(spawn, profile: list[str], kind: str) -> None:
    c: WorkerClient = spawn(ADAPTER, extra_args=profile)
    pid = c.proc.pid
    c.send(_frames.release_session(500, f"raise:{kind}"))
    python_error(c.reply(500), kind)
    c.send(_frames.release_session(501, "plain"))
    assert c.reply(501).WhichOneof("kind") == "result"
    assert c.call("released") == [f"raise:{kind}", "plain"]
    alive(c, pid)


# ------------------------------------------------ 2. str that is not UTF-8

NOT_UTF8 = b"caf\xe9.txt".decode("utf-8", "surrogateescape")


def encoding_error(f: pb.Frame) -> pb.Error:
    assert f.WhichOneof("kind") == "error", f"expected an error, got {f}"
    e = f.error
    assert e.kind == pb.ERROR_KIND_ENCODING, e
    assert "lone surrogate" in e.message and "os.fsencode" in e.message, e
    return e


@pytest.mark.parametrize("profile", PROFILES)
def test_results_with_lone_surrogates_are_encoding_errors(spawn, profile: list[str], tmp_path: Path) -> None:
    c: WorkerClient = spawn(ADAPTER, extra_args=profile)
    pid = c.proc.pid
    for _ in range(2):  # the second run may be inline on the reading thread
        e = encoding_error(c.call_frame("not_utf8_result"))
        assert e.details["path"] == "result[2]"
        assert encoding_error(c.call_frame("not_utf8_scalar")).details["path"] == "result"
        assert "<key '" in encoding_error(c.call_frame("not_utf8_key")).details["path"]
    # What os.listdir gives for a file name that is not UTF-8.
    (tmp_path / os.fsdecode(b"caf\xe9.txt")).write_text("x")
    (tmp_path / "plain.txt").write_text("x")
    e = encoding_error(c.call_frame("listdir", path=str(tmp_path)))
    assert e.details["path"] == "result[0]"
    # The FFI's graceful encoding makes refs of objects, not of such strings.
    for _ in range(2):
        e = encoding_error(c.call_frame("snakepit.ffi.call", "os", "fsdecode", b"caf\xe9"))
        assert e.details["path"] == "result"
    alive(c, pid)


def test_streams_with_lone_surrogates_end_in_encoding_errors(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    pid = c.proc.pid
    fid = c.execute("not_utf8_stream", stream=True, window=8)
    first = c.reply(fid)
    assert first.WhichOneof("kind") == "chunk" and decode(first.chunk.value) == "first"
    assert encoding_error(c.reply(fid)).details["path"] == "chunk[1]"
    fid = c.execute("not_utf8_chunk_metadata", stream=True, window=8)
    assert "metadata" in encoding_error(c.reply(fid)).details["path"]
    # Not streamed: the items are one list.
    assert encoding_error(c.call_frame("not_utf8_stream")).details["path"] == "result[1]"
    alive(c, pid)


@pytest.mark.parametrize("profile", PROFILES)
def test_exception_text_with_lone_surrogates_reaches_the_caller(spawn, profile: list[str]) -> None:
    c: WorkerClient = spawn(ADAPTER, extra_args=profile)
    pid = c.proc.pid
    for _ in range(2):
        e = c.call_frame("not_utf8_error").error
        assert e.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and e.python_type == "ValueError"
        assert e.message == "cannot open caf\\udce9.txt"
        assert "caf\\udce9.txt" in e.traceback
        e = c.call_frame("not_utf8_exception_type").error
        assert e.kind == pb.ERROR_KIND_PYTHON_EXCEPTION and e.python_type == "Bad"
        assert e.message == "oops" and e.details["module"] == "mod_caf\\udce9.txt"
    alive(c, pid)


def test_telemetry_with_lone_surrogates_is_sent_escaped(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    pid = c.proc.pid
    fid = c.execute("not_utf8_telemetry")
    events: list[pb.TelemetryEvent] = []
    while True:
        f = c.reply(fid)
        if f.WhichOneof("kind") != "telemetry":
            break
        events.append(f.telemetry)
    assert f.WhichOneof("kind") == "result" and decode(f.result.value) == "sent"
    event, span = events
    assert event.name == "event caf\\udce9.txt"
    assert dict(event.measurements) == {"m caf\\udce9.txt": 1.0}
    assert decode(event.metadata["k caf\\udce9.txt"]) == "v caf\\udce9.txt"
    assert decode(event.metadata["n"]) == 1
    assert span.name == "span caf\\udce9.txt"
    assert decode(span.metadata["path"]) == "caf\\udce9.txt"
    alive(c, pid)


def test_host_call_arguments_with_lone_surrogates_are_encoding_errors(spawn) -> None:
    c: WorkerClient = spawn(ADAPTER)
    pid = c.proc.pid
    # No HostCall frame goes out: the request fails before.
    e = encoding_error(c.call_frame("not_utf8_host_arg"))
    assert e.details["path"] == "greet() args[0]"
    e = encoding_error(c.call_frame("not_utf8_host_kwarg"))
    assert "keyword" in e.details["path"]
    alive(c, pid)


# ------------------------------------------------ 4. host calls refused


@pytest.mark.parametrize("profile", PROFILES)
def test_a_busy_host_call_raises_host_call_rejected(spawn, profile: list[str]) -> None:
    c: WorkerClient = spawn(ADAPTER, extra_args=profile)
    pid = c.proc.pid
    fid = c.execute("call_host_or_busy", name="greet")
    call = c.recv()
    assert call.WhichOneof("kind") == "host_call" and call.host_call.tool == "greet"
    refusal = pb.Error(kind=pb.ERROR_KIND_BUSY, message="too many host calls of this worker are running")
    c.send(_frames.host_call_result(call.id, error=refusal))
    # The tool catches it and returns normally.
    assert decode(c.reply(fid).result.value) == {
        "rejected": "HostCallRejected",
        "kind": "busy",
        "message": "too many host calls of this worker are running",
        "host_tool_error": True,
    }
    # The next call is answered.
    fid = c.execute("call_host_or_busy", name="greet")
    call = c.recv()
    c.send(_frames.host_call_result(call.id, value=encode("hi")))
    assert decode(c.reply(fid).result.value) == {"value": "hi"}
    alive(c, pid)


def test_host_call_rejected_is_exported() -> None:
    import snakepit_bridge
    from snakepit_bridge import errors

    assert snakepit_bridge.HostCallRejected is errors.HostCallRejected
    assert "HostCallRejected" in snakepit_bridge.__all__ and "HostCallRejected" in errors.__all__
    assert issubclass(errors.HostCallRejected, errors.HostToolError)
