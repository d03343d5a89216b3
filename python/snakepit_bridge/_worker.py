"""The worker process: one connection to the host, framed protobuf both ways.

Threads (leader/follower):
  * capacity + 1 threads (capacity is 1 in the process profile, ``--threads`` in
    the thread profile) both read and execute. One at a time holds ``rlock`` and
    reads frames, answering Ping/Credit/Cancel/Release* itself and queueing
    Execute requests; it runs known-quick requests itself and hands the socket
    to a follower before running anything else. Each owns a persistent asyncio
    loop for async tools;
  * a watch thread hands the socket to a follower when such a quick request
    runs long on the reader, so Ping and Cancel are always answered promptly;
  * host calls (a tool calling a host tool, see ``host_call``): the calling
    thread waits for the HostCallResult, which the reading thread delivers.
    While it waits, its request gives its capacity slot back, because the host
    tool may call tools of this worker in turn (nested Execute frames), and a
    reader that is running such a tool inline hands the socket over first.
    Every request whose slot is given back keeps its thread, so one more
    executor thread is started when needed: the worker keeps at least
    capacity + 1 + (requests waiting on the host) threads, so a thread is
    always left to read the socket. At most _MAX_HOST_WAITERS requests give
    their slot back at once (so at most capacity + 1 + _MAX_HOST_WAITERS
    executor threads); beyond that a waiting request keeps its slot;
  * a dispatcher thread, started with the first variable watch, runs watch
    callbacks (``_host_calls.WatchTable``).

Adapter instances (see ``base_adapter_threaded`` for the user-facing rules):
in the process profile every request gets a new instance (``initialize()``
and ``cleanup()`` around the tool); the thread profile accepts only classes
declaring ``__thread_safe__ = True`` and serves every request on one instance
created, and initialized, at start-up and cleaned up when the worker exits.
``_context.current_request`` is set to the ``_Request`` around everything run
for a request, which scopes ``self.session_context`` of the shared instance
and gives telemetry its frame id. ``--thread-safety-check`` wraps every tool
call in a ``ThreadSafetyChecker`` whose warnings become telemetry events.

Every in-flight request lives in ``_Worker.registry`` until its final reply is
claimed: whoever pops it from the registry (the executor with a result, the
reader with a Cancel, the shutdown path) sends the one final frame.

The universal FFI (``_ffi.py``, ``docs/ffi-protocol.md``): the reserved tools
``snakepit.ffi.*`` are ``_FfiPlan`` entries in ``plans`` (unless ``--no-ffi``),
so quick ones run inline like quick adapter tools; ``_run_ffi`` runs them with
no adapter instance. Ref, stream-ref and callback values decode through the
FFI in the arguments of every tool; ``current_request`` is set from before the
arguments are decoded, as refs belong to the request's session.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib
import inspect
import math
import os
import platform
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from . import __version__, _ffi, telemetry
from ._codec import (
    LIST_COST,
    MAP_COST,
    WIRE_DEPTH,
    EncodingError,
    _dec,
    decode_values,
    encode_into,
    safe_text,
    surrogate_error,
)
from ._context import current_request, set_telemetry_sink
from ._host_calls import HostWaiter, WatchTable, error_from_pb
from ._ml_errors import classify
from ._proto import snakepit_pb2 as pb
from ._stream_chunk import StreamChunk
from .base_adapter import _OWN_CONTEXT, BaseAdapter, ToolMetadata, _RequestScopedContext
from .base_adapter_threaded import is_thread_safe
from .errors import HostCallTimeout, HostToolError, RefNotFoundError, SessionMismatchError
from .session_context import SessionContext
from .thread_safety_checker import ThreadSafetyChecker, ThreadSafetyError, ThreadSafetyIssue

__all__ = ["WorkerConfig", "main", "parse_args", "run"]

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
DEFAULT_STREAM_WINDOW = 64
EXIT_OK = 0
EXIT_PROTOCOL = 2
EXIT_STARTUP = 3

# A request whose last run took less than this may have its reply held back
# (batched with the next replies) while more work is queued.
_FAST_SECONDS = 100e-6
_MAX_BATCH = 64
# A known-quick request runs on the thread that reads the socket, which keeps
# reading once it returns. If such a run lasts longer than this, the watch
# thread hands the socket to a follower while it still runs, so Ping, Cancel
# and new work are not left waiting for a quick tool that turned slow.
_INLINE_HANDOFF_SECONDS = 0.02
# The watch thread keeps checking on this period while inline runs keep
# starting, and sleeps until the next one once none started for this long.
_WATCH_LINGER_SECONDS = 0.1
_MAX_ERROR_TEXT = 32 * 1024
# How long a host call waits when the request has no deadline.
_DEFAULT_HOST_CALL_TIMEOUT = 30.0
# A host call that inherits its request's deadline waits this much longer: the
# host, whose clock started first, is the one to end the request (Timeout to
# its caller, Cancel to us); ours is the backstop for a host that went quiet.
_HOST_DEADLINE_GRACE = 0.25
# Requests that may give their capacity slot back while they wait on the host
# at the same time, i.e. executor threads started beyond capacity + 1.
_MAX_HOST_WAITERS = 16
# Ids of host calls given up (timed out, cancelled) remembered so that their
# late answers are dropped quietly.
_ABANDONED_HOST_CALLS = 1024
# Telemetry frames emitted before the Hello went out (by the shared instance's
# __init__/initialize) are held, at most this many; later ones are dropped.
_MAX_EARLY_TELEMETRY = 1024
# How long the worker waits for the shared instance's cleanup() when it exits.
_CLEANUP_SECONDS = 5.0
# Name of the telemetry events carrying thread-safety checker warnings.
THREAD_SAFETY_WARNING_EVENT = "snakepit.thread_safety.warning"

_pack_len = struct.Struct(">I").pack
_unpack_len = struct.Struct(">I").unpack_from

_NULL_VALUE_BYTES = pb.Value(null=pb.NULL_VALUE).SerializeToString()


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL_VARINTS[n]
    # Two and three bytes without a loop: frame ids, stream seqs and sizes.
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    if n < 0x200000:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL_VARINTS = [bytes([i]) for i in range(0x80)]

_pack_double = struct.Struct("<d").pack
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def _scalar_value_bytes(value: Any) -> bytes | None:
    """The serialized Value of an int, float, str or bool, written by hand (a
    fraction of the cost of building and serializing a message); None for
    anything else. Field numbers as in snakepit.proto: bool 2, int 3
    (sint64), float 5, str 6."""
    t = type(value)
    if t is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return b"\x18" + _varint((value << 1) ^ (value >> 63))
        return None
    if t is str:
        try:
            b = value.encode()
        except UnicodeEncodeError:  # lone surrogates: let protobuf refuse it
            return None
        return b"2" + _varint(len(b)) + b
    if t is float:
        return b")" + _pack_double(value)
    if t is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    return None


# ------------------------------------------------------------------ config


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    adapter: str
    fd: int = 3
    profile: str = "process"
    threads: int = 8
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    python_path: tuple[str, ...] = ()
    worker_id: str = ""
    pool: str = ""
    busy_poll_us: int = 0
    thread_safety_check: bool = False
    # The universal FFI: whether its tools are served, the refs each session
    # may hold, how long an unused ref lives (0: until released), helpers.
    ffi: bool = True
    max_refs: int = 10_000
    ref_ttl_ms: int = 0
    helper_dirs: tuple[str, ...] = ()
    helper_allow: tuple[str, ...] = ()

    @property
    def capacity(self) -> int:
        return 1 if self.profile == "process" else self.threads


def parse_args(argv: Sequence[str] | None = None) -> WorkerConfig:
    p = argparse.ArgumentParser(
        prog="python -m snakepit_bridge.worker",
        description="Serve a snakepit adapter over an inherited Unix stream socket.",
    )
    p.add_argument("--adapter", required=True, help="adapter class as module.Class")
    p.add_argument("--fd", type=int, default=3, help="inherited connected socket (default 3)")
    p.add_argument("--profile", choices=("process", "thread"), default="process")
    p.add_argument("--threads", type=int, default=8, help="executor threads (thread profile only)")
    p.add_argument("--max-frame-bytes", type=int, default=DEFAULT_MAX_FRAME_BYTES)
    p.add_argument("--python-path", action="append", default=[], metavar="DIR", help="prepended to sys.path")
    p.add_argument("--worker-id", default="")
    p.add_argument("--pool", default="")
    p.add_argument(
        "--busy-poll-us",
        type=int,
        default=0,
        help="when idle, poll the socket this long before sleeping (cuts wake-up latency)",
    )
    p.add_argument(
        "--thread-safety-check",
        action="store_true",
        help="check every tool call with a ThreadSafetyChecker; its warnings are sent as "
        f"{THREAD_SAFETY_WARNING_EVENT} telemetry events",
    )
    p.add_argument(
        "--max-refs",
        type=int,
        default=10_000,
        metavar="N",
        help="FFI: refs one session may hold; one more evicts the least recently used (default 10000)",
    )
    p.add_argument(
        "--ref-ttl-ms",
        type=int,
        default=0,
        metavar="N",
        help="FFI: drop a ref unused this long (default 0: never)",
    )
    p.add_argument(
        "--helper-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="FFI: directory of helper files (file.py with functions; repeatable, first match wins)",
    )
    p.add_argument(
        "--helper-allow",
        action="append",
        default=[],
        metavar="PATTERN",
        help="FFI: fnmatch pattern over file.function a helper must match (repeatable; none: all allowed)",
    )
    p.add_argument("--no-ffi", action="store_true", help="do not serve the snakepit.ffi.* tools")
    ns = p.parse_args(argv)
    if ns.threads < 1:
        p.error("--threads must be at least 1")
    if ns.max_frame_bytes < 1024:
        p.error("--max-frame-bytes must be at least 1024")
    if ns.max_refs < 1:
        p.error("--max-refs must be at least 1")
    if ns.ref_ttl_ms < 0:
        p.error("--ref-ttl-ms must not be negative")
    return WorkerConfig(
        adapter=ns.adapter,
        fd=ns.fd,
        profile=ns.profile,
        threads=ns.threads,
        max_frame_bytes=ns.max_frame_bytes,
        python_path=tuple(ns.python_path),
        worker_id=ns.worker_id,
        pool=ns.pool,
        busy_poll_us=max(0, ns.busy_poll_us),
        thread_safety_check=ns.thread_safety_check,
        ffi=not ns.no_ffi,
        max_refs=ns.max_refs,
        ref_ttl_ms=ns.ref_ttl_ms,
        helper_dirs=tuple(ns.helper_dir),
        helper_allow=tuple(ns.helper_allow),
    )


# ------------------------------------------------------------- tool plans


class _BadArguments(Exception):
    def __init__(self, message: str, parameter: str = "", details: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.details = details or {}


class _Mismatch(Exception):
    pass


def _instance_of(types: type | tuple[type, ...]) -> Callable[[Any], Any]:
    """A checker passing instances of `types` through unchanged."""

    def check(v: Any) -> Any:
        if isinstance(v, types):
            return v
        raise _Mismatch

    return check


_chk_bool = _instance_of(bool)
_chk_dict = _instance_of(dict)
_chk_bytes = _instance_of((bytes, bytearray))


def _chk_str(v: Any) -> Any:
    if isinstance(v, str):
        return v
    raise _Mismatch


def _chk_int(v: Any) -> Any:
    if type(v) is int or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    raise _Mismatch


def _chk_float(v: Any) -> Any:
    t = type(v)
    if t is float or t is int or (isinstance(v, (int, float)) and not isinstance(v, bool)):
        return v
    raise _Mismatch


def _chk_list(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return v
    np = sys.modules.get("numpy")
    if np is not None and isinstance(v, np.ndarray):
        return v.tolist()
    raise _Mismatch


def _chk_ndarray(v: Any) -> Any:
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(v, np.ndarray):
            return v
        if isinstance(v, (list, tuple)):
            try:
                return np.asarray(v)
            except (ValueError, TypeError):
                raise _Mismatch from None
    raise _Mismatch


_CHECKERS: dict[str, Callable[[Any], Any]] = {
    "str": _chk_str,
    "int": _chk_int,
    "float": _chk_float,
    "bool": _chk_bool,
    "list": _chk_list,
    "dict": _chk_dict,
    "bytes": _chk_bytes,
    "ndarray": _chk_ndarray,
}

_NAMES_BY_TYPE: dict[Any, str] = {
    str: "str",
    int: "int",
    float: "float",
    bool: "bool",
    list: "list",
    dict: "dict",
    bytes: "bytes",
    bytearray: "bytes",
}
_LISTISH = (tuple, set, frozenset)
_STRING_ANNOTATIONS = {
    "str": "str",
    "int": "int",
    "float": "float",
    "bool": "bool",
    "list": "list",
    "dict": "dict",
    "bytes": "bytes",
    "np.ndarray": "ndarray",
    "numpy.ndarray": "ndarray",
    "ndarray": "ndarray",
}


_STRING_GENERICS = {
    "list": "list",
    "List": "list",
    "typing.List": "list",
    "dict": "dict",
    "Dict": "dict",
    "typing.Dict": "dict",
    "NDArray": "ndarray",
    "npt.NDArray": "ndarray",
    "numpy.typing.NDArray": "ndarray",
}
_OPTIONAL_PREFIXES = ("Optional[", "typing.Optional[")


def _classify_text(text: str) -> tuple[str, bool, bool]:
    """Map an annotation that stayed text (unresolvable) to (wire type name, checked, optional).

    Knows the plain names of the checked types, ``Optional[X]``, ``X | None``
    and the generic list, dict and ndarray spellings; anything else is "any"."""
    text = text.strip()
    for prefix in _OPTIONAL_PREFIXES:
        if text.startswith(prefix) and text.endswith("]"):
            name, checked, _ = _classify_text(text[len(prefix) : -1])
            return name, checked, True
    parts = _split_top_level(text, "|")
    if len(parts) > 1:
        rest = [t for t in parts if t != "None"]
        if len(rest) == 1:
            name, checked, _ = _classify_text(rest[0])
            return name, checked, len(rest) != len(parts)
        return "any", False, False
    name = _STRING_ANNOTATIONS.get(text)
    if name:
        return name, True, False
    head, bracket, _ = text.partition("[")
    if bracket and text.endswith("]"):
        name = _STRING_GENERICS.get(head.strip())
        if name:
            return name, True, False
    return "any", False, False


def _split_top_level(text: str, sep: str) -> list[str]:
    """`text` split at each `sep` outside brackets, parts stripped."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _resolve_annotation(ann: Any, func: Callable[..., Any]) -> Any:
    """Evaluates one text annotation in the function's globals; its text if that fails.

    A quoted annotation under ``from __future__ import annotations`` is text
    twice over, so text that evaluates to text is evaluated again."""
    namespace = getattr(inspect.unwrap(func), "__globals__", {})
    for _ in range(2):
        if not isinstance(ann, str):
            return ann
        try:
            ann = eval(ann, namespace)  # noqa: S307 - annotations are code, as for typing.get_type_hints
        except Exception:  # an unresolvable annotation is classified from its text
            return ann
    return ann


def _classify(ann: Any) -> tuple[str, bool, bool]:
    """Map an annotation to (wire type name, checked, optional)."""
    if ann is inspect.Parameter.empty or ann is Any or ann is None:
        return "any", False, False
    if isinstance(ann, str):
        return _classify_text(ann)
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return _classify(typing.get_args(ann)[0])
    optional = False
    if origin is typing.Union or origin is types.UnionType:
        members = typing.get_args(ann)
        rest = [m for m in members if m is not type(None)]
        if len(rest) != 1:
            return "any", False, False
        optional = len(rest) != len(members)
        ann = rest[0]
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
            origin = typing.get_origin(ann)
    base = origin if origin is not None else ann
    name = _NAMES_BY_TYPE.get(base)
    if name is not None:
        return name, True, optional
    if isinstance(base, type):
        if base.__name__ == "ndarray" and base.__module__.startswith("numpy"):
            return "ndarray", True, optional
        if issubclass(base, _LISTISH):
            return "list", False, optional
        try:
            from collections.abc import Mapping as _Mapping
            from collections.abc import Sequence as _Sequence

            if issubclass(base, _Mapping):
                return "dict", False, optional
            if issubclass(base, _Sequence) and not issubclass(base, (str, bytes)):
                return "list", False, optional
        except TypeError:
            pass
    return "any", False, optional


_PARAM_KINDS = {
    inspect.Parameter.POSITIONAL_OR_KEYWORD: pb.PARAM_KIND_POSITIONAL_OR_KEYWORD,
    inspect.Parameter.POSITIONAL_ONLY: pb.PARAM_KIND_POSITIONAL_ONLY,
    inspect.Parameter.KEYWORD_ONLY: pb.PARAM_KIND_KEYWORD_ONLY,
    inspect.Parameter.VAR_POSITIONAL: pb.PARAM_KIND_VAR_POSITIONAL,
    inspect.Parameter.VAR_KEYWORD: pb.PARAM_KIND_VAR_KEYWORD,
}


def _optional_checker(chk: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        return None if v is None else chk(v)

    return check


class _ToolPlan:
    """Everything the hot path needs about one tool, computed once."""

    __slots__ = (
        "name",
        "meta",
        "func",
        "plain",
        "attr",
        "sig",
        "spec",
        "by_name",
        "required",
        "checks",
        "simple",
        "fast",
    )

    def __init__(self, cls: type, meta: ToolMetadata) -> None:
        func = meta.function
        assert func is not None
        self.name = meta.name
        self.meta = meta
        self.attr = func.__name__
        raw = inspect.getattr_static(cls, self.attr, None)
        self.plain = inspect.isfunction(raw)
        # What the instance's attribute is: a decorator stacked over @tool
        # (functools.wraps copies the metadata, which names the inner
        # function) must run too.
        self.func = raw if self.plain else func
        full = inspect.signature(func)
        params = list(full.parameters.values())
        if self.plain and params and params[0].kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            params = params[1:]
        elif not self.plain:
            params = list(inspect.signature(getattr(cls, self.attr)).parameters.values())
        self.sig = full.replace(parameters=params)
        try:
            hints = typing.get_type_hints(inspect.unwrap(func))
        except Exception:  # one unresolvable forward reference: resolve each annotation on its own
            hints = {p.name: _resolve_annotation(p.annotation, func) for p in params}
        self.spec = pb.ToolSpec(
            name=meta.name,
            description=meta.description,
            supports_streaming=meta.supports_streaming,
            required_variables=list(meta.required_variables),
            is_async=meta.is_async,
        )
        self.by_name: dict[str, inspect.Parameter] = {}
        required: list[str] = []
        checks: list[tuple[str, str, Callable[[Any], Any]]] = []
        simple = True
        for p in params:
            ann = hints.get(p.name, p.annotation)
            type_name, checked, optional = _classify(ann)
            if p.default is None:
                optional = True
            ps = self.spec.parameters.add(
                name=p.name,
                type=type_name,
                required=p.default is inspect.Parameter.empty
                and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD),
                kind=_PARAM_KINDS[p.kind],
            )
            if p.default is not inspect.Parameter.empty:
                try:
                    encode_into(p.default, ps.default_value)
                except EncodingError:
                    ps.ClearField("default_value")
            if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                simple = False
                continue
            if p.kind is inspect.Parameter.POSITIONAL_ONLY:
                simple = False
            self.by_name[p.name] = p
            if p.default is inspect.Parameter.empty:
                required.append(p.name)
            if checked:
                chk = _CHECKERS[type_name]
                checks.append((p.name, type_name, _optional_checker(chk) if optional else chk))
        self.required = tuple(required)
        self.checks = tuple(checks)
        self.simple = simple
        self.fast = False

    def bind(self, ex: pb.Execute) -> tuple[Sequence[Any], dict[str, Any]]:
        kwargs = {k: _dec(v, 0) for k, v in ex.kwargs.items()} if ex.kwargs else {}
        args: Sequence[Any] = [_dec(v, 0) for v in ex.args] if ex.args else ()
        checks = self.checks
        if self.simple and not args:
            by_name = self.by_name
            for k in kwargs:
                if k not in by_name:
                    raise _BadArguments(
                        f"{self.name}() got an unexpected keyword argument {k!r}; "
                        f"parameters are: {', '.join(by_name) or 'none'}",
                        k,
                    )
            for r in self.required:
                if r not in kwargs:
                    raise _BadArguments(f"{self.name}() is missing required parameter {r!r}", r)
            for name, expected, chk in checks:
                if name in kwargs:
                    v = kwargs[name]
                    try:
                        kwargs[name] = chk(v)
                    except _Mismatch:
                        raise self._mismatch(name, expected, v) from None
            return (), kwargs
        try:
            ba = self.sig.bind(*args, **kwargs)
        except TypeError as e:
            m = re.search(r"'([^']+)'", str(e))
            raise _BadArguments(f"{self.name}(): {e}", m.group(1) if m else "") from None
        arguments = ba.arguments
        for name, expected, chk in checks:
            if name in arguments:
                v = arguments[name]
                try:
                    arguments[name] = chk(v)
                except _Mismatch:
                    raise self._mismatch(name, expected, v) from None
        return ba.args, ba.kwargs

    def _mismatch(self, name: str, expected: str, v: Any) -> _BadArguments:
        got = type(v).__name__
        return _BadArguments(
            f"{self.name}() parameter {name!r} expects {expected}, got {got}",
            name,
            {"expected": expected, "got": got},
        )


class _FfiPlan:
    """A ``snakepit.ffi.*`` operation in ``_Worker.plans``: `fast` drives the
    inline run as for a tool; `_run` hands it to `_run_ffi`."""

    __slots__ = ("name", "func", "kwargs_ok", "streams", "fast")

    def __init__(self, name: str, op: Any) -> None:
        self.name = name
        self.func = op.func
        self.kwargs_ok = op.kwargs_ok
        self.streams = op.streams
        self.fast = False


# Passed as the kwargs of an FFI operation called without any (never mutated).
_NO_KWARGS: dict[str, Any] = {}

_Plan = typing.Union[_ToolPlan, _FfiPlan]


# ---------------------------------------------------------------- requests


class _Request:
    __slots__ = (
        "id",
        "execute",
        "cancelled",
        "credits",
        "cond",
        "task",
        "loop",
        "slot",
        "host_waits",
        "deadline",
        "shared",
        "context",
    )

    def __init__(self, fid: int, execute: pb.Execute) -> None:
        self.id = fid
        self.execute = execute
        self.cancelled = False
        self.credits = 0
        self.cond: threading.Condition | None = None
        self.task: asyncio.Task[Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # The request's capacity slot, under `work_lock`: True while it holds
        # one (from when it is queued until its run ends), False while it gave
        # it back to wait on the host, None once its run ended.
        self.slot: bool | None = True
        # Threads of this request waiting on the host (under `work_lock`).
        self.host_waits = 0
        # time.monotonic() when the caller stops waiting; 0.0 for no deadline.
        self.deadline = 0.0
        # As a _context.RequestScope: the shared adapter instance running the
        # request (None for a per-request instance) and the session context
        # its `session_context` attribute shows while it does.
        self.shared: Any = None
        self.context: Any = None

    @property
    def metadata(self) -> Any:
        """The request's metadata map (trace context and the like)."""
        return self.execute.metadata

    @property
    def session_id(self) -> str:
        """The request's session ("" for none): refs it makes and uses belong to it."""
        return self.execute.session_id


class _HookScope:
    """The request scope of a release hook run on the shared instance (frame id 0)."""

    __slots__ = ("shared", "context")

    id = 0
    metadata: typing.Mapping[str, str] = types.MappingProxyType({})

    def __init__(self, shared: Any, context: Any) -> None:
        self.shared = shared
        self.context = context

    @property
    def session_id(self) -> str:
        return self.context.session_id


class _Cancelled(Exception):
    pass


class _TooLarge(Exception):
    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class _Executor:
    __slots__ = ("current", "loop", "reading", "pending")

    def __init__(self) -> None:
        self.current: _Request | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # True while this thread holds `rlock` (touched by its own thread only).
        self.reading = False
        # Replies this thread holds back, to send in one batch.
        self.pending: list[bytes] = []




def _clip(text: str, limit: int = _MAX_ERROR_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


# The worker's own files: their frames leading a tool's traceback are left out.
_INTERNAL_FILES = frozenset({__file__, _ffi.__file__})


def _exc_text(e: BaseException) -> str:
    """str(e), or a stand-in when the exception's __str__ itself fails."""
    try:
        return str(e)
    except Exception:
        return f"<{type(e).__name__} whose str() failed>"


def _format_tb(e: BaseException) -> str:
    """The traceback of `e` from the first frame of the tool's own code (or,
    when it failed in the worker's or the FFI's code itself, from the last)."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename in _INTERNAL_FILES:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(e), e, tb))


class _StreamEnd:
    """Marks the end of a generator in the stream loop."""


_END = _StreamEnd()


def _unwrap_item(item: Any) -> tuple[Any, bool, Any]:
    """(data, is_final, metadata) of one yielded item."""
    if type(item) is StreamChunk:
        return item.data, item.is_final, item.metadata
    if type(item) is dict and "data" in item and "is_final" in item:
        keys = item.keys()
        if len(keys) == 2 or (len(keys) == 3 and "metadata" in item):
            return item["data"], bool(item["is_final"]), item.get("metadata")
    return item, False, None


# Frame kinds, by field number, read from a frame protobuf refused.
_FRAME_KINDS: dict[int, str] = {f.number: f.name for f in pb.Frame.DESCRIPTOR.oneofs_by_name["kind"].fields}
# Kinds of frames from the host that get an answer of their own (Execute has
# its own error; Cancel, Credit, Shutdown and the rest do not).
_ANSWERED_KINDS = frozenset({"ping", "release_session", "release_ref"})


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while shift < 70:
        b = data[pos]  # IndexError past the end: a truncated frame
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & 0xFFFF_FFFF_FFFF_FFFF, pos
        shift += 7
    raise ValueError("varint longer than 10 bytes")


def _peek_frame(body: bytes) -> tuple[int, str | None]:
    """(id, kind) of a Frame, read from its top-level fields alone: nested
    messages are skipped by their length, never decoded, so a frame protobuf
    refuses still tells which exchange it belongs to. What cannot be read is
    0 and None."""
    fid = 0
    kind: str | None = None
    pos = 0
    n = len(body)
    try:
        while pos < n:
            key, pos = _read_varint(body, pos)
            field, wire_type = key >> 3, key & 7
            if wire_type == 0:
                value, pos = _read_varint(body, pos)
                if field == 1:
                    fid = value
            elif wire_type == 2:
                size, pos = _read_varint(body, pos)
                # The last kind wins, as when protobuf decodes a oneof.
                kind = _FRAME_KINDS.get(field, kind)
                pos += size
            elif wire_type == 1:
                pos += 8
            elif wire_type == 5:
                pos += 4
            else:
                break
    except (IndexError, ValueError):
        pass
    return fid, kind


# ------------------------------------------------------------------ worker


class _Worker:
    def __init__(self, config: WorkerConfig, sock: socket.socket, cls: type, plans: dict[str, _Plan]) -> None:
        self.config = config
        self.sock = sock
        self.cls = cls
        self.plans = plans
        self.max = config.max_frame_bytes
        self.registry: dict[int, _Request] = {}
        # Leader/follower: every thread both reads and executes. One thread at
        # a time holds `rlock` and reads the socket; when what it read is work
        # it may run, it hands the socket to a follower and runs the request
        # itself, so a request never waits for a thread hand-off. There is one
        # thread more than the capacity, so a reader is always there for Ping
        # and Cancel while every slot is busy.
        self.work: collections.deque[_Request] = collections.deque()
        self.work_lock = threading.Lock()
        self.busy = 0
        self.rlock = threading.Lock()
        # The inline run of the reader (at most one at a time, as only the
        # `rlock` holder runs inline), shared with the watch thread under
        # `work_lock` (taken anyway to take the request and to free its slot):
        # the thread running it, None once it ended or the watch thread took
        # the socket away from it; when it started; when the latest one did.
        self.watch_cond = threading.Condition(self.work_lock)
        self.inline_ex: _Executor | None = None
        self.inline_t0 = 0.0
        self.inline_last = 0.0
        self.watch_idle = False
        self.buf = bytearray()
        self.spin_ns = config.busy_poll_us * 1000
        self.last_batch = 0
        # Receive into one buffer: recv(n) would allocate n bytes per call.
        self.rbuf = bytearray(1 << 18)
        self.rview = memoryview(self.rbuf)
        self.wlock = threading.Lock()
        self.shutting_down = False
        self.executors = [_Executor() for _ in range(config.capacity + 1)]
        self.has_set_ctx = callable(getattr(cls, "set_session_context", None))
        self.initialize = getattr(cls, "initialize", None) if callable(getattr(cls, "initialize", None)) else None
        self.cleanup = getattr(cls, "cleanup", None) if callable(getattr(cls, "cleanup", None)) else None
        et = getattr(cls, "execute_tool", None)
        self.dynamic = callable(et) and et is not BaseAdapter.execute_tool
        # Host calls: open calls by id (the worker's own id space), the last
        # id used, ids given up on, all under `host_lock`; requests that gave
        # their slot back to wait on the host (under `work_lock`).
        self.host_lock = threading.Lock()
        self.host_calls: dict[int, HostWaiter] = {}
        self.host_seq = 0
        self.host_abandoned: collections.deque[int] = collections.deque(maxlen=_ABANDONED_HOST_CALLS)
        self.released = 0
        self.watches = WatchTable()
        # The instance serving every request (thread profile), made by
        # start_adapter(); None for an instance per request.
        self.shared: Any = None
        # Whether `session_context` of the class is request-scoped (BaseAdapter's),
        # and whether, set_session_context being BaseAdapter's too, a new
        # instance's context may be stored directly (what that method does,
        # minus two Python calls on the hot path).
        self.scoped_ctx = isinstance(inspect.getattr_static(cls, "session_context", None), _RequestScopedContext)
        self.ctx_direct = self.scoped_ctx and getattr(cls, "set_session_context", None) is BaseAdapter.set_session_context
        self.checker: ThreadSafetyChecker | None = None
        if config.thread_safety_check:
            self.checker = ThreadSafetyChecker(
                enabled=True, strict_mode=False, on_warning=self._on_safety_warning, issue_python_warnings=False
            )
        # Telemetry frames held until the Hello is sent (None once it is).
        self.early: list[bytes] | None = []
        self.early_dropped = 0
        # Held while the worker exits: the shared instance is cleaned up once.
        self.finish_lock = threading.Lock()
        # The universal FFI. Its ref store and decoders work even with
        # --no-ffi (refs then are never made, callbacks still are callable).
        self.ffi = _ffi.FfiRuntime(
            worker_id=config.worker_id,
            max_refs=config.max_refs,
            ref_ttl_ms=config.ref_ttl_ms,
            helper_dirs=config.helper_dirs,
            helper_allow=config.helper_allow,
            host=self,
        )
        _ffi.install(self.ffi)
        if config.ffi:
            for name, op in _ffi.OPS.items():
                plans[name] = _FfiPlan(name, op)
        set_telemetry_sink(self._telemetry)

    # ------------------------------------------------------------- start/exit

    def start_adapter(self) -> None:
        """Creates and initializes the shared instance (thread profile), before the Hello."""
        if self.config.profile == "thread":
            inst = self.cls()
            self.shared = inst
            if self.initialize is not None:
                r = inst.initialize()
                if inspect.isawaitable(r):
                    loop = asyncio.new_event_loop()
                    try:
                        loop.run_until_complete(r)  # type: ignore[arg-type]
                    finally:
                        loop.close()
        if self.checker is not None:
            self.checker.check_library_safety(adapter=self.shared)

    def send_hello(self, hello: pb.Frame) -> None:
        """Sends the Hello, then the telemetry held back until it was sent."""
        try:
            with self.wlock:
                early, self.early = self.early, None
                data = self.frame_bytes(hello)
                if early:
                    data += b"".join(early)
                self.sock.sendall(data)
        except OSError:
            self._finish(EXIT_OK, "")
        if self.early_dropped:
            sys.stderr.write(
                f"snakepit worker: dropped {self.early_dropped} telemetry events emitted during start-up\n"
            )

    def _finish(self, code: int, message: str) -> NoReturn:
        """Exits, first running the shared instance's cleanup() (once, within _CLEANUP_SECONDS)."""
        with self.finish_lock:
            inst = self.shared
            if inst is not None and self.cleanup is not None:
                done = threading.Event()

                def clean() -> None:
                    try:
                        r = inst.cleanup()
                        if inspect.isawaitable(r):
                            loop = asyncio.new_event_loop()
                            try:
                                loop.run_until_complete(r)  # type: ignore[arg-type]
                            finally:
                                loop.close()
                    except Exception as e:
                        sys.stderr.write(f"snakepit worker: cleanup() raised:\n{_format_tb(e)}")
                    finally:
                        done.set()

                threading.Thread(target=clean, name="snakepit-cleanup", daemon=True).start()
                if not done.wait(_CLEANUP_SECONDS):
                    sys.stderr.write(f"snakepit worker: cleanup() did not return within {_CLEANUP_SECONDS} s\n")
            _die(code, message)

    # -------------------------------------------------------------- telemetry

    def _telemetry(self, fid: int, event: pb.TelemetryEvent) -> None:
        """The telemetry sink: sends one TelemetryEvent frame (held until the Hello went out)."""
        body = pb.Frame(id=fid, telemetry=event).SerializeToString()
        if len(body) > self.max:
            sys.stderr.write(
                f"snakepit worker: dropping telemetry event {event.name!r}: {len(body)} bytes exceed "
                f"max_frame_bytes ({self.max})\n"
            )
            return
        data = _pack_len(len(body)) + body
        with self.wlock:
            early = self.early
            if early is not None:
                if len(early) < _MAX_EARLY_TELEMETRY:
                    early.append(data)
                else:
                    self.early_dropped += 1
                return
            try:
                self.sock.sendall(data)
            except OSError:
                # The host is gone; the reading thread sees it and exits.
                pass

    def _on_safety_warning(self, issue: ThreadSafetyIssue) -> None:
        metadata: dict[str, Any] = {
            "adapter": issue.adapter or _class_name(self.cls),
            "method": issue.method,
            "message": issue.message,
            "kind": issue.kind,
        }
        if issue.attribute:
            metadata["attribute"] = issue.attribute
        if issue.library:
            metadata["library"] = issue.library
        telemetry.emit(THREAD_SAFETY_WARNING_EVENT, {"threads": issue.threads}, metadata)

    # ---------------------------------------------------------------- output

    def send(self, data: bytes) -> None:
        try:
            with self.wlock:
                self.sock.sendall(data)
        except OSError:
            # The host is gone: nobody is left to answer.
            self._finish(EXIT_OK, "")

    def frame_bytes(self, frame: pb.Frame) -> bytes:
        body = frame.SerializeToString()
        return _pack_len(len(body)) + body

    def error_bytes(
        self,
        fid: int,
        kind: int,
        message: str,
        *,
        python_type: str = "",
        tb: str = "",
        parameter: str = "",
        details: dict[str, str] | None = None,
    ) -> bytes:
        # Diagnostic text always reaches the caller: a lone surrogate (a file
        # name that is not UTF-8 in a message) becomes its backslash escape.
        err = pb.Error(
            kind=kind,
            python_type=safe_text(python_type),
            message=_clip(safe_text(message)),
            traceback=_clip(safe_text(tb)),
            parameter=safe_text(parameter),
            details={safe_text(k): safe_text(v) for k, v in details.items()} if details else None,
        )
        return self.frame_bytes(pb.Frame(id=fid, error=err))

    def exception_bytes(self, fid: int, e: BaseException) -> bytes:
        """The Error frame for exception `e`: PYTHON_EXCEPTION, with the fields
        of a recognised ML failure in `details`; the FFI's typed errors (refs,
        helpers) get their own kind and details."""
        t = type(e)
        typed = _ffi.wire_error(e)
        if typed is not None:
            kind, details = typed
            return self.error_bytes(fid, kind, _exc_text(e), python_type=t.__name__, details=details)
        details = {"module": str(t.__module__)}
        try:
            ml = classify(e)
        except Exception:  # the classifier must never cost the caller its error
            ml = None
        if ml:
            details.update(ml)
        return self.error_bytes(
            fid,
            pb.ERROR_KIND_PYTHON_EXCEPTION,
            _exc_text(e),
            python_type=t.__name__,
            tb=_format_tb(e),
            details=details,
        )

    def failure_bytes(self, fid: int, error: BaseException) -> bytes:
        """The Error frame for a request that ended in `error`."""
        if isinstance(error, (_Cancelled, asyncio.CancelledError)):
            return self.error_bytes(fid, pb.ERROR_KIND_CANCELLED, "cancelled")
        if isinstance(error, _ffi.FfiArgumentError):
            return self.error_bytes(
                fid, pb.ERROR_KIND_BAD_ARGUMENTS, str(error), parameter=error.parameter, details=error.details or None
            )
        if isinstance(error, _TooLarge):
            return self.error_bytes(
                fid,
                pb.ERROR_KIND_PAYLOAD_TOO_LARGE,
                str(error),
                details={"size": str(error.size), "limit": str(error.limit)},
            )
        if isinstance(error, EncodingError):
            return self.error_bytes(
                fid, pb.ERROR_KIND_ENCODING, str(error), python_type=error.python_type, details={"path": error.path}
            )
        return self.exception_bytes(fid, error)

    def _sized(self, fid: int, body: bytes) -> bytes:
        if len(body) > self.max:
            return self.error_bytes(
                fid,
                pb.ERROR_KIND_PAYLOAD_TOO_LARGE,
                f"reply of {len(body)} bytes exceeds max_frame_bytes ({self.max})",
                details={"size": str(len(body)), "limit": str(self.max)},
            )
        return _pack_len(len(body)) + body

    def result_bytes(self, fid: int, value: Any, graceful: bool = False) -> bytes:
        """The Result frame for `value` (`graceful`: objects without a wire
        form become refs, as FFI results do; else they are an ENCODING error)."""
        if value is None:
            vb = _NULL_VALUE_BYTES
        elif (vb := _scalar_value_bytes(value)) is None:  # type: ignore[assignment]
            v = pb.Value()
            try:
                if graceful:
                    _ffi.encode_graceful(value, v, "result")
                else:
                    encode_into(value, v, root="result")
            except EncodingError as e:
                return self.error_bytes(
                    fid, pb.ERROR_KIND_ENCODING, str(e), python_type=e.python_type, details={"path": e.path}
                )
            vb = v.SerializeToString()
        r = b"\x0a" + _varint(len(vb)) + vb
        body = b"\x08" + _varint(fid) + b"\x1a" + _varint(len(r)) + r
        return self._sized(fid, body)

    def chunk_bytes(
        self, fid: int, seq: int, data: Any, has_value: bool, is_final: bool, metadata: Any, graceful: bool = False
    ) -> bytes:
        if has_value and not metadata and (vb := _scalar_value_bytes(data)) is not None:
            # Chunk fields by hand, in field order: seq 1 (absent when 0), value 2, is_final 3.
            cb = b"\x12" + _varint(len(vb)) + vb
            if seq:
                cb = b"\x08" + _varint(seq) + cb
            if is_final:
                cb += b"\x18\x01"
            body = b"\x08" + _varint(fid) + b'"' + _varint(len(cb)) + cb
            if len(body) > self.max:
                raise _TooLarge(
                    f"chunk {seq} of {len(body)} bytes exceeds max_frame_bytes ({self.max})",
                    size=len(body),
                    limit=self.max,
                )
            return _pack_len(len(body)) + body
        c = pb.Chunk(seq=seq, is_final=is_final)
        if has_value:
            if graceful:
                _ffi.encode_graceful(data, c.value, "chunk")
            else:
                encode_into(data, c.value, root=f"chunk[{seq}]")
        if metadata:
            for k, mv in metadata.items():
                key = str(k)
                try:
                    slot = c.metadata[key]
                except UnicodeEncodeError as e:
                    err = surrogate_error(key, e)
                    err.path = f"chunk[{seq}].metadata<key {key!r}>"
                    err.reason = f"{err.reason} at {err.path}"
                    raise err from None
                encode_into(mv, slot, root=f"chunk[{seq}].metadata[{k!r}]")
        cb = c.SerializeToString()
        body = b"\x08" + _varint(fid) + b'"' + _varint(len(cb)) + cb
        if len(body) > self.max:
            raise _TooLarge(
                f"chunk {seq} of {len(body)} bytes exceeds max_frame_bytes ({self.max})", size=len(body), limit=self.max
            )
        return _pack_len(len(body)) + body

    # ---------------------------------------------------------------- reader

    def serve(self) -> NoReturn:
        self.handlers = {
            "execute": self._on_execute,
            "cancel": self._on_cancel,
            "credit": self._on_credit,
            "ping": self._on_ping,
            "release_session": self._on_release_session,
            "release_ref": self._on_release_ref,
            "shutdown": self._on_shutdown,
            "host_call_result": self._on_host_call_result,
            "variable_update": self._on_variable_update,
        }
        threading.Thread(target=self._watch_main, name="snakepit-watch", daemon=True).start()
        for i, ex in enumerate(self.executors[1:], start=1):
            threading.Thread(target=self._thread_main, args=(ex,), name=f"snakepit-worker-{i}", daemon=True).start()
        self._thread_main(self.executors[0])
        raise AssertionError("unreachable")

    def _read_once(self) -> None:
        """Reads from the socket once and handles every whole frame that came.
        Called only with `rlock` held."""
        try:
            n = self._recv()
        except OSError as e:
            self._finish(EXIT_OK, f"snakepit worker: connection error ({e}); exiting\n")
        if not n:
            self._finish(EXIT_OK, "")
        buf = self.buf
        buf += self.rview[:n]
        frames = 0
        maxb = self.max
        handlers = self.handlers
        from_string = pb.Frame.FromString
        pos = 0
        n_buf = len(buf)
        while n_buf - pos >= 4:
            (n,) = _unpack_len(buf, pos)
            if n > maxb:
                _die(
                    EXIT_PROTOCOL,
                    f"snakepit worker: protocol error: incoming frame length {n} exceeds "
                    f"max_frame_bytes {maxb}; exiting\n",
                )
            end = pos + 4 + n
            if end > n_buf:
                break
            body = bytes(buf[pos + 4 : end])
            pos = end
            frames += 1
            try:
                frame = from_string(body)
            except Exception as e:  # upb's DecodeError: too deep, bad UTF-8, malformed
                self._on_undecodable(body, e)
                continue
            kind = frame.WhichOneof("kind")
            h = handlers.get(kind)  # type: ignore[arg-type]
            try:
                if h is not None:
                    h(frame)
                else:
                    self._on_unexpected(frame, kind)
            except Exception as e:  # one odd frame is that frame's problem, never the worker's
                sys.stderr.write(f"snakepit worker: handling a {kind} frame (id {frame.id}) failed:\n{_format_tb(e)}")
        if pos:
            del buf[:pos]
        self.last_batch = frames

    def _recv(self) -> int:
        """One recv. With busy polling on and nothing running, polls for a
        short while first: waking a sleeping process costs tens of
        microseconds on many machines, more than a whole call."""
        sock = self.sock
        rbuf = self.rbuf
        spin = self.spin_ns
        # Poll only after a read that brought a lone request: back-to-back
        # single calls are where a wake-up dominates. Under load, requests come
        # in batches and the CPU is better left to the host.
        if spin and self.busy == 0 and self.last_batch == 1:
            now = time.perf_counter_ns
            deadline = now() + spin
            dontwait = socket.MSG_DONTWAIT
            while True:
                try:
                    return sock.recv_into(rbuf, 0, dontwait)
                except BlockingIOError:
                    pass
                if self.busy or now() > deadline:
                    break
        return sock.recv_into(rbuf)

    def _take(self) -> _Request | None:
        """The next request, if there is one and a free slot to run it."""
        with self.work_lock:
            if self.work and self.busy < self.config.capacity:
                self.busy += 1
                return self.work.popleft()
        return None

    def _on_execute(self, frame: pb.Frame) -> None:
        fid = frame.id
        if self.shutting_down:
            self.send(self.error_bytes(fid, pb.ERROR_KIND_SHUTTING_DOWN, "worker is shutting down"))
            return
        if fid in self.registry:
            self.send(self.error_bytes(fid, pb.ERROR_KIND_PROTOCOL, f"request id {fid} is already in flight"))
            return
        ex = frame.execute
        st = _Request(fid, ex)
        timeout_ms = ex.timeout_ms
        if timeout_ms:
            st.deadline = time.monotonic() + timeout_ms / 1000.0
        if ex.stream:
            st.cond = threading.Condition()
            st.credits = ex.stream_window or DEFAULT_STREAM_WINDOW
        self.registry[fid] = st
        with self.work_lock:
            self.work.append(st)

    def _on_cancel(self, frame: pb.Frame) -> None:
        st = self.registry.pop(frame.id, None)
        if st is None:
            return
        st.cancelled = True
        cond = st.cond
        if cond is not None:
            with cond:
                cond.notify_all()
        self._wake_host_waiters(st)
        task, loop = st.task, st.loop
        if task is not None and loop is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass
        reason = frame.cancel.reason
        self.send(self.error_bytes(frame.id, pb.ERROR_KIND_CANCELLED, f"cancelled: {reason}" if reason else "cancelled"))

    def _on_credit(self, frame: pb.Frame) -> None:
        st = self.registry.get(frame.id)
        if st is None or st.cond is None:
            return
        with st.cond:
            st.credits += frame.credit.chunks
            st.cond.notify_all()

    def _on_ping(self, frame: pb.Frame) -> None:
        in_flight = sum(1 for e in self.executors if e.current is not None)
        pong = pb.Pong(sent_unix_nanos=frame.ping.sent_unix_nanos, in_flight=in_flight)
        self.send(self.frame_bytes(pb.Frame(id=frame.id, pong=pong)))

    def _call_hook(self, fid: int, name: str, session_id: str, *args: Any) -> bytes:
        """Runs adapter hook `name` if the adapter has one; returns the reply
        to exchange `fid`: a null Result, or the Error the hook raised.

        A static or class method is called as it is; a plain method on a new
        instance whose session context has the session id (and no host), or
        on the shared instance in the thread profile."""
        raw = inspect.getattr_static(self.cls, name, None)
        if raw is None:
            return self.result_bytes(fid, None)
        token = None
        try:
            if inspect.isfunction(raw):
                ctx = SessionContext(session_id)
                shared = self.shared
                if shared is not None:
                    # The shared instance holds the state the hook releases.
                    inst = shared
                    token = current_request.set(_HookScope(shared, ctx))
                    if self.has_set_ctx:
                        inst.set_session_context(ctx)
                else:
                    inst = self.cls()
                    if self.has_set_ctx:
                        inst.set_session_context(ctx)
                    else:
                        inst.session_context = ctx
                hook = getattr(inst, name)
            else:
                hook = getattr(self.cls, name)
            r = hook(session_id, *args)
            if inspect.isawaitable(r):
                loop = asyncio.new_event_loop()
                try:
                    loop.run_until_complete(r)  # type: ignore[arg-type]
                finally:
                    loop.close()
        except BaseException as e:  # SystemExit and the like from the hook too: the worker serves on
            sys.stderr.write(f"snakepit worker: {name} hook raised:\n{_format_tb(e)}")
            return self.exception_bytes(fid, e)
        finally:
            if token is not None:
                current_request.reset(token)
        return self.result_bytes(fid, None)

    def _on_release_session(self, frame: pb.Frame) -> None:
        sid = frame.release_session.session_id
        self.watches.drop_session(sid)
        self.ffi.store.release_session(sid)
        self._hook_off_the_reader(frame.id, "on_session_release", sid)

    def _on_release_ref(self, frame: pb.Frame) -> None:
        rr = frame.release_ref
        # An FFI ref (if it is one: a ref unknown here is no error), then the
        # adapter's hook for refs of its own.
        self.ffi.store.release(rr.session_id, rr.ref_id)
        self._hook_off_the_reader(frame.id, "on_ref_release", rr.session_id, rr.ref_id)

    def _hook_off_the_reader(self, fid: int, name: str, *args: Any) -> None:
        """Runs an adapter's release hook on a thread of its own, so that a
        slow hook never holds up the socket (Ping, Cancel, new work); the
        reply goes out when the hook returns. Releases are rare; a thread each
        costs less than the machinery to share one."""
        if getattr(self.cls, name, None) is None:
            self.send(self._call_hook(fid, name, *args))
            return

        def run() -> None:
            self.send(self._call_hook(fid, name, *args))

        threading.Thread(target=run, name=f"snakepit-{name}", daemon=True).start()

    def _on_host_call_result(self, frame: pb.Frame) -> None:
        fid = frame.id
        with self.host_lock:
            w = self.host_calls.pop(fid, None)
            if w is not None:
                res = frame.host_call_result
                if w.on_value is not None and res.WhichOneof("outcome") == "value":
                    try:
                        w.on_value(res.value)
                    except Exception as e:
                        w.failure = e
                w.outcome = res
                w.event.set()
                return
            abandoned = fid in self.host_abandoned
        if not abandoned:
            sys.stderr.write(f"snakepit worker: ignoring HostCallResult for id {fid}: no open host call has that id\n")

    def _on_variable_update(self, frame: pb.Frame) -> None:
        self.watches.deliver(frame.variable_update)

    def _on_undecodable(self, body: bytes, e: Exception) -> None:
        """A frame whose length was fine but whose body protobuf refused (a
        value nested deeper than LIMIT_VALUE_WIRE_DEPTH, a str that is not
        UTF-8, garbage): its id and kind are read from the top-level fields
        alone, and only the exchange it belongs to fails."""
        fid, kind = _peek_frame(body)
        if kind == "execute":
            if fid in self.registry:
                self.send(self.error_bytes(fid, pb.ERROR_KIND_PROTOCOL, f"request id {fid} is already in flight"))
                return
            self.send(
                self.error_bytes(
                    fid,
                    pb.ERROR_KIND_BAD_ARGUMENTS,
                    f"the request could not be decoded ({e}): its arguments nest deeper than a frame may "
                    f"carry (lists at most {WIRE_DEPTH // LIST_COST} deep, maps {WIRE_DEPTH // MAP_COST}: "
                    f"LIMIT_VALUE_WIRE_DEPTH = {WIRE_DEPTH} protobuf levels) or are malformed",
                    details={
                        "limit": str(WIRE_DEPTH),
                        "max_list_depth": str(WIRE_DEPTH // LIST_COST),
                        "max_map_depth": str(WIRE_DEPTH // MAP_COST),
                        "size": str(len(body)),
                    },
                )
            )
            return
        if kind in _ANSWERED_KINDS:
            self.send(self.error_bytes(fid, pb.ERROR_KIND_PROTOCOL, f"undecodable {kind} frame: {e}"))
            return
        if kind == "cancel":
            # The reason is lost; the cancellation is not.
            self._on_cancel(pb.Frame(id=fid, cancel=pb.Cancel()))
            return
        if kind == "host_call_result":
            with self.host_lock:
                w = self.host_calls.pop(fid, None)
                if w is not None:
                    w.failure = HostToolError(
                        f"the host's answer to the call of {w.tool!r} could not be decoded: {e}",
                        kind="protocol",
                        tool=w.tool,
                    )
                    w.outcome = pb.HostCallResult()
                    w.event.set()
                    return
        sys.stderr.write(
            f"snakepit worker: skipping an undecodable {kind or 'unknown'} frame (id {fid}, {len(body)} bytes): {e}\n"
        )

    def _on_unexpected(self, frame: pb.Frame, kind: str | None) -> None:
        if kind is None:
            sys.stderr.write(f"snakepit worker: ignoring frame id {frame.id} with no kind (newer protocol?)\n")
            return
        sys.stderr.write(f"snakepit worker: host sent a {kind} frame, which only a worker sends\n")
        self.send(self.error_bytes(frame.id, pb.ERROR_KIND_PROTOCOL, f"unexpected {kind} frame from the host"))

    def _on_shutdown(self, frame: pb.Frame) -> None:
        if self.shutting_down:
            return
        self.shutting_down = True
        grace = frame.shutdown.grace_ms / 1000.0
        threading.Thread(target=self._shutdown_main, args=(grace,), name="snakepit-shutdown", daemon=True).start()

    def _shutdown_main(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not self.registry and self.busy == 0 and not self.work:
                break
            time.sleep(0.002)
        for fid in list(self.registry):
            st = self.registry.pop(fid, None)
            if st is not None:
                st.cancelled = True
                self._wake_host_waiters(st)
                self.send(
                    self.error_bytes(fid, pb.ERROR_KIND_SHUTTING_DOWN, "worker shut down before the request finished")
                )
        self._finish(EXIT_OK, "")

    # ------------------------------------------------------------ host calls

    def host_call(
        self,
        request: Any,
        session_id: str,
        tool: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        *,
        timeout: float | None,
        on_value: Callable[[pb.Value], None] | None = None,
        graceful: bool = False,
    ) -> Any:
        """Calls host tool `tool` for `request` (the caller's _Request, or None)
        and waits for the answer; returns its value or raises what it says.

        While it waits, a running request gives its slot back (_host_wait_begin).
        `on_value`, if given, runs on the reading thread with the answer's value
        before the caller wakes (used to register a watch before its first update
        can arrive). Raises _Cancelled when the request is cancelled meanwhile,
        HostCallTimeout after `timeout` seconds (default: what is left of the
        request's deadline, else _DEFAULT_HOST_CALL_TIMEOUT). `graceful`: the
        arguments are encoded as FFI results are (a host callback's are)."""
        st: _Request | None = request if isinstance(request, _Request) and request.slot is not None else None
        if st is not None and st.cancelled:
            raise _Cancelled
        if timeout is None:
            if st is not None and st.deadline:
                left = st.deadline - time.monotonic()
                if left <= 0:
                    raise HostCallTimeout(
                        f"not calling host tool {tool!r}: the request's deadline has passed",
                        kind="timeout",
                        tool=tool,
                    )
                timeout = left + _HOST_DEADLINE_GRACE
            else:
                timeout = _DEFAULT_HOST_CALL_TIMEOUT
        elif not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        timeout_ms = max(1, math.ceil(timeout * 1000.0))
        frame = pb.Frame()
        hc = frame.host_call
        try:
            hc.session_id = session_id
            hc.tool = tool
        except UnicodeEncodeError as e:
            raise EncodingError(
                f"host tool name or session id is not valid UTF-8: {safe_text(tool)!r}", python_type="str"
            ) from None
        hc.timeout_ms = timeout_ms
        if st is not None:
            hc.parent_request_id = st.id
        for i, a in enumerate(args):
            if graceful:
                _ffi.encode_graceful(a, hc.args.add(), f"{tool}() args[{i}]")
            else:
                encode_into(a, hc.args.add(), root=f"{tool}() args[{i}]")
        for k, v in kwargs.items():
            try:
                slot = hc.kwargs[k]
            except UnicodeEncodeError as e:
                err = surrogate_error(k, e)
                err.path = f"{tool}() <keyword {k!r}>"
                err.reason = f"{err.reason} at {err.path}"
                raise err from None
            encode_into(v, slot, root=f"{tool}() {k}")
        with self.host_lock:
            self.host_seq += 1
            hid = self.host_seq
            w = HostWaiter(hid, st, tool, on_value)
            self.host_calls[hid] = w
        frame.id = hid
        body = frame.SerializeToString()
        if len(body) > self.max:
            with self.host_lock:
                self.host_calls.pop(hid, None)
            raise HostToolError(
                f"call of host tool {tool!r} is {len(body)} bytes, more than max_frame_bytes ({self.max})",
                kind="payload_too_large",
                details={"size": str(len(body)), "limit": str(self.max)},
                tool=tool,
            )
        if st is not None:
            self._host_wait_begin(st)
        try:
            self.send(_pack_len(len(body)) + body)
            end = time.monotonic() + timeout
            event = w.event
            while True:
                if st is not None and st.cancelled:
                    raise _Cancelled
                if w.outcome is not None:
                    break
                left = end - time.monotonic()
                if left <= 0:
                    with self.host_lock:
                        gone = self.host_calls.pop(hid, None) is not None
                        if gone:
                            self.host_abandoned.append(hid)
                    if gone:
                        raise HostCallTimeout(
                            f"host tool {tool!r} did not answer within {timeout_ms} ms",
                            kind="timeout",
                            details={"timeout_ms": str(timeout_ms)},
                            tool=tool,
                        )
                    # The answer came just now: `outcome` is set.
                    continue
                event.wait(left)
        finally:
            if w.outcome is None:
                with self.host_lock:
                    if self.host_calls.pop(hid, None) is not None:
                        self.host_abandoned.append(hid)
            if st is not None:
                self._host_wait_end(st)
        if w.failure is not None:
            raise w.failure
        res = w.outcome
        assert res is not None
        which = res.WhichOneof("outcome")
        if which == "value":
            return _dec(res.value, 0)
        if which == "error":
            raise error_from_pb(res.error, tool)
        return None

    def watch(
        self,
        request: Any,
        session_id: str,
        identifiers: list[str],
        include_initial: bool,
        callback: Callable[[Any, Any, dict[str, str]], Any],
        *,
        timeout: float | None,
    ) -> str:
        """Asks the host to watch variables of the session and registers
        `callback` for the watch id it answers; returns that id."""
        watches = self.watches

        def register(value: pb.Value) -> None:
            watch_id = _dec(value, 0)
            if not isinstance(watch_id, str) or not watch_id:
                raise HostToolError(
                    f"snakepit.variables.watch answered {watch_id!r}, not a watch id",
                    kind="protocol",
                    tool="snakepit.variables.watch",
                )
            watches.add(watch_id, session_id, callback)

        watches.begin()
        try:
            return self.host_call(
                request,
                session_id,
                "snakepit.variables.watch",
                (),
                {"identifiers": list(identifiers), "include_initial": bool(include_initial)},
                timeout=timeout,
                on_value=register,
            )
        finally:
            watches.end()

    def unwatch(self, request: Any, session_id: str, watch_id: str, *, timeout: float | None) -> None:
        """Forgets a watch here (no callback of it runs afterwards) and at the host."""
        self.watches.remove(watch_id)
        self.host_call(request, session_id, "snakepit.variables.unwatch", (), {"watch_id": watch_id}, timeout=timeout)

    def _host_wait_begin(self, st: _Request) -> None:
        """A thread of running request `st` is about to wait on the host: the
        request gives its slot back (the first of its waiting threads does), one
        more executor thread starts if that leaves no thread to read, and if the
        request runs inline on the reading thread, the socket goes to a follower."""
        held: list[bytes] | None = None
        new_ex: _Executor | None = None
        with self.work_lock:
            st.host_waits += 1
            if st.host_waits == 1 and st.slot and self.released < _MAX_HOST_WAITERS:
                st.slot = False
                self.busy -= 1
                self.released += 1
                if len(self.executors) < self.config.capacity + 1 + self.released:
                    new_ex = _Executor()
                    self.executors.append(new_ex)
            ie = self.inline_ex
            if ie is not None and ie.current is st:
                held = self._end_inline_locked(ie)
            n = len(self.executors)
        if held:
            self.send(b"".join(held))
        if new_ex is not None:
            threading.Thread(
                target=self._thread_main, args=(new_ex,), name=f"snakepit-worker-{n - 1}", daemon=True
            ).start()

    def _host_wait_end(self, st: _Request) -> None:
        """A thread of `st` stopped waiting on the host: once none waits, a
        request still running takes its slot back (even beyond capacity)."""
        with self.work_lock:
            st.host_waits -= 1
            if st.host_waits == 0 and st.slot is False:
                st.slot = True
                self.busy += 1
                self.released -= 1

    def _wake_host_waiters(self, st: _Request) -> None:
        """Wakes the threads of cancelled request `st` that wait on the host."""
        with self.host_lock:
            for w in self.host_calls.values():
                if w.request is st:
                    w.event.set()

    # -------------------------------------------------------------- executor

    def _thread_main(self, ex: _Executor) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        ex.loop = loop
        plans = self.plans
        pending = ex.pending
        take = self._take
        while True:
            st = take()
            if st is None:
                self._flush(pending)
                st = self._lead(ex, loop, pending)
                if st is None:
                    # Lost the socket during an inline run that turned slow:
                    # carry on as a plain executor.
                    continue
            self._execute(ex, st, plans.get(st.execute.tool), loop, pending)

    def _lead(self, ex: _Executor, loop: asyncio.AbstractEventLoop, pending: list[bytes]) -> _Request | None:
        """Waits for the socket, then reads it until there is a request this
        thread must run off the socket; returns it after handing the socket to
        a follower. Returns None when the watch thread took the socket away
        (and released `rlock` for it) while a known-quick request ran here."""
        rlock = self.rlock
        rlock.acquire()
        ex.reading = True
        plans = self.plans
        work = self.work
        work_lock = self.work_lock
        capacity = self.config.capacity
        clock = time.perf_counter
        try:
            while True:
                # As _take, and when the request is known to be quick, its
                # inline run starts in the same critical section.
                st: _Request | None = None
                plan: _Plan | None = None
                t0 = 0.0
                with work_lock:
                    if work and self.busy < capacity:
                        self.busy += 1
                        st = work.popleft()
                        plan = plans.get(st.execute.tool)
                        if plan is not None and plan.fast and not st.execute.stream:
                            # Known to be quick: run it right here, keeping
                            # the socket. Waking a follower would cost more
                            # than the call; the first slow run of the tool
                            # ends this, and the watch thread hands the socket
                            # over if it runs long.
                            t0 = clock()
                            ex.current = st
                            self.inline_ex = ex
                            self.inline_t0 = t0
                            self.inline_last = t0
                            if self.watch_idle:
                                self.watch_idle = False
                                self.watch_cond.notify()
                if st is None:
                    self._flush(pending)
                    self._read_once()
                    continue
                if t0:
                    assert plan is not None
                    if self._execute_inline(ex, st, plan, t0, loop, pending):
                        continue
                    self._flush(pending)
                    return None
                # Hand the socket to a follower, which reads (Ping, Cancel,
                # more work) while this thread runs the request.
                ex.reading = False
                rlock.release()
                return st
        except BaseException:
            if ex.reading:
                ex.reading = False
                rlock.release()
            raise

    def _flush(self, pending: list[bytes]) -> None:
        if pending:
            self.send(b"".join(pending) if len(pending) > 1 else pending[0])
            pending.clear()

    def _execute(
        self,
        ex: _Executor,
        st: _Request,
        plan: _Plan | None,
        loop: asyncio.AbstractEventLoop,
        pending: list[bytes],
    ) -> None:
        """Runs one taken request off the socket; held replies go out first,
        and its reply joins `pending`."""
        if pending and not st.cancelled:
            self._flush(pending)
        ex.current = st
        t0 = time.perf_counter()
        try:
            reply = self._run(st, plan, loop)
        except BaseException as e:
            reply = self._escaped(st, e)
        finally:
            ex.current = None
            with self.work_lock:
                self._free_slot(st)
        if plan is not None:
            plan.fast = time.perf_counter() - t0 < _FAST_SECONDS
        if reply is not None:
            pending.append(reply)
        if len(pending) >= _MAX_BATCH:
            self._flush(pending)

    def _escaped(self, st: _Request, e: BaseException) -> bytes | None:
        """The reply of a request whose run raised past every handler of its
        own: it fails, and the thread lives on to serve the next."""
        sys.stderr.write(f"snakepit worker: request {st.id} ({st.execute.tool!r}) failed in the worker:\n{_format_tb(e)}")
        if not self._claim(st):
            return None
        try:
            return self.failure_bytes(st.id, e)
        except Exception:
            return self.error_bytes(st.id, pb.ERROR_KIND_PYTHON_EXCEPTION, f"{type(e).__name__} in the worker")

    def _free_slot(self, st: _Request) -> None:
        """Gives back what the finished request `st` held (under `work_lock`):
        its capacity slot, or, when it had given the slot back to wait on the
        host and a thread it started still waits, that waiter's count."""
        if st.slot:
            self.busy -= 1
        elif st.slot is False:
            self.released -= 1
        st.slot = None

    def _execute_inline(
        self,
        ex: _Executor,
        st: _Request,
        plan: _Plan,
        t0: float,
        loop: asyncio.AbstractEventLoop,
        pending: list[bytes],
    ) -> bool:
        """Runs one taken, known-quick request on the reader thread, its inline
        run started at `t0` (see _lead); its reply joins `pending` (sent in
        batches while quick requests keep coming). Returns whether this thread
        still holds the socket: if the run lasted longer than
        _INLINE_HANDOFF_SECONDS, the watch thread sent the held replies and
        released `rlock` for it while it ran. `ex.current` is set already."""
        try:
            reply = self._run(st, plan, loop)
        except BaseException as e:
            reply = self._escaped(st, e)
        finally:
            ex.current = None
            with self.work_lock:
                self._free_slot(st)
                if self.inline_ex is ex:
                    self.inline_ex = None
                else:
                    # The watch thread took the socket (another thread may
                    # even be running inline by now).
                    ex.reading = False
        plan.fast = time.perf_counter() - t0 < _FAST_SECONDS
        if reply is not None:
            pending.append(reply)
        if len(pending) >= _MAX_BATCH:
            self._flush(pending)
        return ex.reading

    def _watch_main(self) -> None:
        """Hands the socket to a follower when an inline run lasts too long.

        Sleeps until an inline run starts; then wakes once per
        _INLINE_HANDOFF_SECONDS while inline runs keep starting, so quick calls
        cost it no wake-up each."""
        cond = self.watch_cond
        limit = _INLINE_HANDOFF_SECONDS
        clock = time.perf_counter
        while True:
            with cond:
                while True:
                    now = clock()
                    if self.inline_ex is not None:
                        left = self.inline_t0 + limit - now
                        if left <= 0:
                            break
                        cond.wait(left)
                    elif now - self.inline_last < _WATCH_LINGER_SECONDS:
                        cond.wait(limit)
                    else:
                        self.watch_idle = True
                        cond.wait()
                # The inline run has lasted too long.
                ex = self.inline_ex
                assert ex is not None
                held = self._end_inline_locked(ex)
            if held:
                self.send(b"".join(held))

    def _end_inline_locked(self, ex: _Executor) -> list[bytes]:
        """Takes the socket away from the inline run on `ex` (`self.inline_ex`)
        and releases `rlock` for a follower; returns the replies that thread
        held back, for the caller to send. Called with `work_lock` held, by the
        watch thread or by a thread of the running request about to wait on the
        host. The reading thread holds `rlock` and does not touch the socket,
        `buf` or its held replies until it takes `work_lock` after the run."""
        self.inline_ex = None
        held = ex.pending[:]
        ex.pending.clear()
        st = ex.current
        plan = self.plans.get(st.execute.tool) if st is not None else None
        if plan is not None:
            # As the run will when it ends: the next reader must not run this
            # tool inline as well.
            plan.fast = False
        self.rlock.release()
        return held

    def _claim(self, st: _Request) -> bool:
        return self.registry.pop(st.id, None) is not None

    def _run_coro(self, st: _Request, coro: Any, loop: asyncio.AbstractEventLoop) -> Any:
        task = loop.create_task(coro)
        st.loop = loop
        st.task = task
        if st.cancelled:
            task.cancel()
        try:
            return loop.run_until_complete(task)
        finally:
            st.task = None

    def _run(self, st: _Request, plan: _Plan | None, loop: asyncio.AbstractEventLoop) -> bytes | None:
        """Run one request; return its final reply frame, or None if someone else answered."""
        if st.cancelled:
            return None
        fid = st.id
        ex = st.execute
        if plan is None:
            if self.dynamic and not ex.tool.startswith(_ffi.FFI_PREFIX):
                return self._run_dynamic(st, loop)
            if not self._claim(st):
                return None
            available = ", ".join(sorted(n for n, p in self.plans.items() if type(p) is _ToolPlan)) or "none"
            return self.error_bytes(
                fid,
                pb.ERROR_KIND_UNKNOWN_TOOL,
                f"unknown tool {ex.tool!r}; available tools: {available}",
                details={"tool": ex.tool, "available": available},
            )
        # The request is current from here on: refs in its arguments belong
        # to its session. _lifecycle (or _run_ffi) resets it.
        scope_token = current_request.set(st)
        if type(plan) is _FfiPlan:
            return self._run_ffi(st, plan, loop, scope_token)
        try:
            args, kwargs = plan.bind(ex)
        except _BadArguments as e:
            current_request.reset(scope_token)
            if not self._claim(st):
                return None
            return self.error_bytes(
                fid, pb.ERROR_KIND_BAD_ARGUMENTS, str(e), parameter=e.parameter, details=e.details or None
            )
        except EncodingError as e:
            current_request.reset(scope_token)
            if not self._claim(st):
                return None
            return self.error_bytes(fid, pb.ERROR_KIND_ENCODING, f"could not decode arguments: {e}")
        except (RefNotFoundError, SessionMismatchError) as e:
            current_request.reset(scope_token)
            if not self._claim(st):
                return None
            return self.exception_bytes(fid, e)
        except Exception as e:  # a value the codec could not make sense of (a decoder's own error)
            current_request.reset(scope_token)
            if not self._claim(st):
                return None
            return self.error_bytes(fid, pb.ERROR_KIND_ENCODING, f"could not decode arguments: {type(e).__name__}: {e}")

        if plan.plain:
            func = plan.func
            return self._lifecycle(st, loop, lambda inst: func(inst, *args, **kwargs), scope_token)
        attr = plan.attr
        return self._lifecycle(st, loop, lambda inst: getattr(inst, attr)(*args, **kwargs), scope_token)

    def _run_dynamic(self, st: _Request, loop: asyncio.AbstractEventLoop) -> bytes | None:
        ex = st.execute
        scope_token = current_request.set(st)
        try:
            if ex.args:
                raise _BadArguments(f"{ex.tool}() takes keyword arguments only", "")
            kwargs = {k: _dec(v, 0) for k, v in ex.kwargs.items()}
        except Exception as e:  # bad arguments, or values the codec could not make sense of
            current_request.reset(scope_token)
            if not self._claim(st):
                return None
            if isinstance(e, (RefNotFoundError, SessionMismatchError)):
                return self.exception_bytes(st.id, e)
            kind = pb.ERROR_KIND_BAD_ARGUMENTS if isinstance(e, _BadArguments) else pb.ERROR_KIND_ENCODING
            return self.error_bytes(st.id, kind, str(e))
        name = ex.tool
        return self._lifecycle(
            st, loop, lambda inst: inst.execute_tool(name, kwargs, inst.session_context), scope_token
        )

    def _run_ffi(
        self, st: _Request, plan: _FfiPlan, loop: asyncio.AbstractEventLoop, scope_token: Any
    ) -> bytes | None:
        """Runs an FFI operation (no adapter instance): decodes the arguments
        (refs resolved in the request's session), calls it, and encodes the
        outcome gracefully, all with the request current; then resets
        `scope_token`. `snakepit.ffi.stream` streams the items of what the
        call returned (or answers them as one list without Execute.stream)."""
        fid = st.id
        ex = st.execute
        reply: bytes | None = None
        error: BaseException | None = None
        streamed_seq = -1
        try:
            args = decode_values(ex.args)
            if ex.kwargs:
                if not plan.kwargs_ok:
                    raise _ffi.FfiArgumentError(f"{plan.name} takes no keyword arguments")
                kwargs = {k: _dec(v, 0) for k, v in ex.kwargs.items()}
            else:
                kwargs = _NO_KWARGS
            outcome = plan.func(self.ffi, args, kwargs)
            if type(outcome) is types.CoroutineType:
                outcome = self._run_coro(st, outcome, loop)
            if plan.streams:
                gen = _ffi.as_generator(outcome)
                if ex.stream:
                    streamed_seq = self._stream(st, gen, loop, raw=True)
                else:
                    outcome = self._collect(st, gen, loop, raw=True)
            if streamed_seq < 0 and not st.cancelled:
                if ex.stream:
                    reply = self.chunk_bytes(fid, 0, outcome, True, True, None, graceful=True)
                else:
                    reply = self.result_bytes(fid, outcome, graceful=True)
        except (_Cancelled, asyncio.CancelledError) as e:
            error = e
        except BaseException as e:  # SystemExit, KeyboardInterrupt, GeneratorExit: the request's error
            error = e
        finally:
            current_request.reset(scope_token)
        if st.cancelled:
            return None
        if error is None and streamed_seq >= 0:
            # Closing chunk: no item, needs no credit.
            with self.wlock:
                if not self._claim(st):
                    return None
            return self.chunk_bytes(fid, streamed_seq, None, False, True, None)
        if not self._claim(st):
            return None
        if error is None:
            return reply
        return self.failure_bytes(fid, error)

    def _lifecycle(
        self, st: _Request, loop: asyncio.AbstractEventLoop, call: Callable[[Any], Any], scope_token: Any
    ) -> bytes | None:
        """Runs a tool: instance, initialize(), the call, cleanup(); then
        resets `scope_token` (the request was made current by the caller)."""
        fid = st.id
        ex = st.execute
        inst: Any = None
        outcome: Any = None
        error: BaseException | None = None
        streamed_seq = -1  # >= 0 once a stream ran to its end: the next seq
        shared = self.shared
        try:
            if shared is None:
                inst = self.cls()
                ctx = SessionContext(ex.session_id, ex.metadata, _request=st, _host=self)
                if self.ctx_direct:
                    inst.__dict__[_OWN_CONTEXT] = ctx
                elif self.has_set_ctx:
                    inst.set_session_context(ctx)
                else:
                    inst.session_context = ctx
                if self.initialize is not None:
                    r = inst.initialize()
                    if inspect.isawaitable(r):
                        self._run_coro(st, r, loop)
            else:
                # One instance for all requests: its session_context is this
                # request's while the request runs (see _RequestScopedContext).
                ctx = SessionContext(ex.session_id, ex.metadata, _request=st, _host=self)
                st.shared = shared
                st.context = ctx
                if self.has_set_ctx and not self.ctx_direct:
                    shared.set_session_context(ctx)
                elif not self.scoped_ctx:
                    shared.session_context = ctx
            checker = self.checker
            if checker is None:
                outcome = call(inst if shared is None else shared)
                if inspect.iscoroutine(outcome):
                    outcome = self._run_coro(st, outcome, loop)
                if isinstance(outcome, (types.GeneratorType, types.AsyncGeneratorType)):
                    if ex.stream:
                        streamed_seq = self._stream(st, outcome, loop)
                        outcome = None
                    else:
                        outcome = self._collect(st, outcome, loop)
            else:
                outcome, streamed_seq = self._run_checked(checker, st, call, inst if shared is None else shared, loop)
        except (_Cancelled, asyncio.CancelledError) as e:
            error = e
        except BaseException as e:  # SystemExit, KeyboardInterrupt, GeneratorExit: the request's error
            error = e
        finally:
            if inst is not None and self.cleanup is not None:
                try:
                    r = inst.cleanup()
                    if inspect.isawaitable(r):
                        self._run_coro(st, r, loop)
                except BaseException as e:
                    if error is None:
                        error = e
                    else:
                        sys.stderr.write(f"snakepit worker: cleanup() raised after an error:\n{_format_tb(e)}")
            current_request.reset(scope_token)
        if st.cancelled:
            return None
        if error is not None:
            if not self._claim(st):
                return None
            return self.failure_bytes(fid, error)
        if streamed_seq >= 0:
            # Closing chunk: no item, needs no credit.
            with self.wlock:
                if not self._claim(st):
                    return None
            return self.chunk_bytes(fid, streamed_seq, None, False, True, None)
        if not self._claim(st):
            return None
        if ex.stream:
            try:
                return self.chunk_bytes(fid, 0, outcome, True, True, None)
            except EncodingError as e:
                return self.error_bytes(
                    fid, pb.ERROR_KIND_ENCODING, str(e), python_type=e.python_type, details={"path": e.path}
                )
            except _TooLarge as e:
                return self.error_bytes(
                    fid, pb.ERROR_KIND_PAYLOAD_TOO_LARGE, str(e), details={"size": str(e.size), "limit": str(e.limit)}
                )
        return self.result_bytes(fid, outcome)

    def _run_checked(
        self,
        checker: ThreadSafetyChecker,
        st: _Request,
        call: Callable[[Any], Any],
        inst: Any,
        loop: asyncio.AbstractEventLoop,
    ) -> tuple[Any, int]:
        """Runs the tool as _lifecycle does, tracked by the thread-safety
        checker; returns (outcome, streamed_seq)."""
        ex = st.execute
        streamed_seq = -1
        with checker.track_execution(ex.tool, adapter=inst):
            outcome = call(inst)
            if inspect.iscoroutine(outcome):
                outcome = self._run_coro(st, outcome, loop)
            if isinstance(outcome, (types.GeneratorType, types.AsyncGeneratorType)):
                if ex.stream:
                    streamed_seq = self._stream(st, outcome, loop)
                    outcome = None
                else:
                    outcome = self._collect(st, outcome, loop)
        checker.check_library_safety(adapter=inst)
        return outcome, streamed_seq

    def _next_item(self, st: _Request, gen: Any, loop: asyncio.AbstractEventLoop) -> Any:
        if isinstance(gen, types.GeneratorType):
            return next(gen, _END)
        try:
            return self._run_coro(st, gen.__anext__(), loop)
        except StopAsyncIteration:
            return _END

    def _close(self, st: _Request, gen: Any, loop: asyncio.AbstractEventLoop) -> None:
        if isinstance(gen, types.GeneratorType):
            gen.close()
        else:
            loop.run_until_complete(gen.aclose())

    def _collect(self, st: _Request, gen: Any, loop: asyncio.AbstractEventLoop, raw: bool = False) -> list[Any]:
        """The generator's items as a list (`raw`: the items themselves, no
        StreamChunk or envelope dicts understood)."""
        items: list[Any] = []
        try:
            while not st.cancelled:
                item = self._next_item(st, gen, loop)
                if item is _END:
                    return items
                if raw:
                    items.append(item)
                    continue
                data, final, _ = _unwrap_item(item)
                items.append(data)
                if final:
                    return items
            raise _Cancelled
        finally:
            self._close(st, gen, loop)

    def _stream(self, st: _Request, gen: Any, loop: asyncio.AbstractEventLoop, raw: bool = False) -> int:
        """Send the generator's items as chunks; return the seq of the closing chunk, or -1 if none is needed.

        `raw` (FFI streams): each item is the data as it is (no StreamChunk or
        envelope dicts understood), encoded gracefully."""
        cond = st.cond
        assert cond is not None
        fid = st.id
        seq = 0
        try:
            while True:
                item = self._next_item(st, gen, loop)
                if item is _END:
                    return seq
                if raw:
                    data, final, meta = item, False, None
                else:
                    data, final, meta = _unwrap_item(item)
                with cond:
                    while st.credits <= 0 and not st.cancelled:
                        cond.wait()
                    if st.cancelled:
                        raise _Cancelled
                    st.credits -= 1
                frame = self.chunk_bytes(fid, seq, data, True, final, meta, raw)
                try:
                    with self.wlock:
                        if st.cancelled:
                            raise _Cancelled
                        if final and self.registry.pop(fid, None) is None:
                            raise _Cancelled
                        self.sock.sendall(frame)
                except OSError:
                    self._finish(EXIT_OK, "")
                seq += 1
                if final:
                    st.cancelled = True  # already answered: nothing more may be sent
                    return -1
        finally:
            self._close(st, gen, loop)


# ------------------------------------------------------------------ start-up


def _die(code: int, message: str) -> NoReturn:
    try:
        if message:
            sys.stderr.write(message)
        sys.stderr.flush()
        sys.stdout.flush()
    except Exception:
        pass
    os._exit(code)


def _on_sigint(signum: int, frame: Any) -> None:
    _die(EXIT_OK, "")


def _load_adapter(path: str) -> type:
    module_name, sep, class_name = path.rpartition(".")
    if not sep or not module_name or not class_name:
        raise ValueError(f"--adapter must be module.Class, got {path!r}")
    module = importlib.import_module(module_name)
    try:
        cls = getattr(module, class_name)
    except AttributeError:
        raise AttributeError(f"module {module_name!r} has no attribute {class_name!r}") from None
    if not isinstance(cls, type):
        raise TypeError(f"{path} is a {type(cls).__name__}, not a class")
    return cls


def _tools_of(cls: type) -> list[ToolMetadata]:
    get_tools = getattr(cls, "get_tools", None)
    if callable(get_tools):
        return list(get_tools())
    return BaseAdapter.get_tools.__func__(cls)  # type: ignore[attr-defined]


def _gil_enabled() -> bool:
    f = getattr(sys, "_is_gil_enabled", None)
    return bool(f()) if f is not None else True


def _hello(config: WorkerConfig, plans: dict[str, Any]) -> pb.Frame:
    hello = pb.Hello(
        protocol_version=PROTOCOL_VERSION,
        pid=os.getpid(),
        python_version=platform.python_version(),
        python_implementation=platform.python_implementation(),
        gil_enabled=_gil_enabled(),
        profile=config.profile,
        capacity=config.capacity,
        adapter=config.adapter,
        bridge_version=__version__,
        max_frame_bytes=config.max_frame_bytes,
    )
    for plan in plans.values():
        if type(plan) is _ToolPlan:  # not the FFI's operations
            hello.tools.append(plan.spec)
    return pb.Frame(id=0, hello=hello)


def _send_frame_raw(sock: socket.socket, frame: pb.Frame) -> None:
    body = frame.SerializeToString()
    sock.sendall(_pack_len(len(body)) + body)


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_profile(config: WorkerConfig, cls: type) -> None:
    """Raises ThreadSafetyError if the profile cannot run the adapter class."""
    if config.profile == "thread" and not is_thread_safe(cls):
        owner = next((k for k in cls.__mro__ if "__thread_safe__" in vars(k)), None)
        if owner is None or owner is BaseAdapter:
            how = "does not declare"
        else:
            declared = vars(owner)["__thread_safe__"]
            where = "" if owner is cls else f" (inherited from {_class_name(owner)})"
            how = f"declares __thread_safe__ = {declared!r}{where}, not"
        raise ThreadSafetyError(
            f"adapter class {_class_name(cls)} {how} __thread_safe__ = True, so the thread profile, which "
            "serves concurrent requests on one shared instance, cannot run it. Set __thread_safe__ = True "
            "on the class once it is safe to use from several threads at once (for instance by deriving "
            "from snakepit_bridge.ThreadSafeAdapter and locking shared state with acquire_lock()), or run "
            "it in the process profile (--profile process)."
        )


def _startup_failed(
    sock: socket.socket,
    config: WorkerConfig,
    e: BaseException,
    what: str,
    *,
    details: dict[str, str] | None = None,
    with_traceback: bool = True,
) -> NoReturn:
    """Reports a start-up failure (an ERROR_KIND_STARTUP_FAILED frame with id 0) and exits with EXIT_STARTUP."""
    if with_traceback:
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        sys.stderr.write(f"snakepit worker: {what} {config.adapter!r}:\n{tb}")
    else:
        tb = ""
        sys.stderr.write(f"snakepit worker: {what} {config.adapter!r}: {type(e).__name__}: {e}\n")
    details = {"module": type(e).__module__, "adapter": config.adapter, **(details or {})}
    err = pb.Error(
        kind=pb.ERROR_KIND_STARTUP_FAILED,
        python_type=type(e).__name__,
        message=_clip(f"{what} {config.adapter!r}: {e}"),
        traceback=_clip(tb),
        details=details,
    )
    try:
        _send_frame_raw(sock, pb.Frame(id=0, error=err))
    except OSError:
        pass
    _die(EXIT_STARTUP, "")


def run(config: WorkerConfig) -> NoReturn:
    """Start the worker described by ``config``; never returns."""
    for d in reversed(config.python_path):
        sys.path.insert(0, d)
    try:
        sock = socket.socket(fileno=config.fd)
    except OSError as e:
        _die(EXIT_STARTUP, f"snakepit worker: fd {config.fd} is not a usable socket: {e}\n")
    try:
        cls = _load_adapter(config.adapter)
        plans: dict[str, _Plan] = {m.name: _ToolPlan(cls, m) for m in _tools_of(cls)}
        hello = _hello(config, plans)
    except BaseException as e:  # any start-up failure, SyntaxError and SystemExit included, is reported
        _startup_failed(sock, config, e, "failed to load adapter")
    try:
        _check_profile(config, cls)
    except ThreadSafetyError as e:
        _startup_failed(
            sock,
            config,
            e,
            "cannot run adapter",
            details={"reason": "not_thread_safe", "profile": config.profile, "class": _class_name(cls)},
            with_traceback=False,
        )
    sys.setswitchinterval(0.0005)
    # A real SIGINT ends the worker, as it did when its KeyboardInterrupt
    # reached the top; a KeyboardInterrupt a tool raises is that request's error.
    signal.signal(signal.SIGINT, _on_sigint)
    worker = _Worker(config, sock, cls, plans)
    try:
        worker.start_adapter()
    except BaseException as e:  # __init__ or initialize() of the shared instance failed
        _startup_failed(sock, config, e, "failed to start adapter")
    worker.send_hello(hello)
    try:
        worker.serve()
    except KeyboardInterrupt:
        _die(EXIT_OK, "")
    except BaseException:
        _die(EXIT_PROTOCOL, f"snakepit worker: internal error:\n{traceback.format_exc()}")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of ``python -m snakepit_bridge.worker``."""
    run(parse_args(argv))

