"""One constructor per frame kind: every frame of the worker protocol is built here.

The Python mirror of ``snakepit_proto::frames`` on the host. Frames the worker
sends (``hello``, ``result``, ``batch_result``, ``chunk``, ``error``,
``host_call``, ``pong``, ``telemetry``) come out as the bytes that go on the
socket, length prefix included; results and chunks of scalars are written by
hand (see ``_wire.py``), the hot path's replies. Frames the host sends
(``execute``, ``cancel``, ``credit``, ``ping``, ``release_session``,
``release_ref``, ``shutdown``, ``host_call_result``, ``variable_update``) come
out as ``pb.Frame`` messages: the worker only reads them, the tests' wire
client writes them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import _ffi, _graceful, _shm
from ._codec import EncodingError, SharedMemoryExhausted, encode_into, safe_text, surrogate_error
from ._proto import snakepit_pb2 as pb
from ._wire import NULL_VALUE_BYTES, pack_len, scalar_value_bytes, varint

__all__: list[str] = []

#: Error messages and tracebacks longer than this are cut.
MAX_ERROR_TEXT = 32 * 1024


class TooLarge(Exception):
    """A frame would exceed max_frame_bytes (a chunk: the stream's error)."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


def clip(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    """`text`, cut to `limit` characters with a note of how many more there were."""
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


def encode(frame: pb.Frame) -> bytes:
    """A frame message as the bytes that go on the socket."""
    body = frame.SerializeToString()
    return pack_len(len(body)) + body


# ------------------------------------------------------------ worker -> host


def hello(
    *,
    protocol_version: int,
    pid: int,
    python_version: str,
    python_implementation: str,
    gil_enabled: bool,
    profile: str,
    capacity: int,
    adapter: str,
    bridge_version: str,
    max_frame_bytes: int,
    tools: Iterable[pb.ToolSpec],
) -> bytes:
    """The Hello (id 0) a worker sends once, when it is ready to serve."""
    h = pb.Hello(
        protocol_version=protocol_version,
        pid=pid,
        python_version=python_version,
        python_implementation=python_implementation,
        gil_enabled=gil_enabled,
        profile=profile,
        capacity=capacity,
        adapter=adapter,
        bridge_version=bridge_version,
        max_frame_bytes=max_frame_bytes,
    )
    h.tools.extend(tools)
    return encode(pb.Frame(id=0, hello=h))


def error_message(
    kind: pb.ErrorKind,
    message: str,
    *,
    python_type: str = "",
    tb: str = "",
    parameter: str = "",
    details: Mapping[str, str] | None = None,
) -> pb.Error:
    """An Error, as a frame or one call of a batch carries it. Diagnostic
    text always reaches the caller: a lone surrogate (a file name that is not
    UTF-8 in a message) becomes its backslash escape; long text is cut
    (``clip``)."""
    return pb.Error(
        kind=kind,
        python_type=safe_text(python_type),
        message=clip(safe_text(message)),
        traceback=clip(safe_text(tb)),
        parameter=safe_text(parameter),
        details={safe_text(k): safe_text(v) for k, v in details.items()} if details else None,
    )


def error_reply(fid: int, err: pb.Error) -> bytes:
    """The Error frame answering exchange `fid` with `err`."""
    return encode(pb.Frame(id=fid, error=err))


def error(
    fid: int,
    kind: pb.ErrorKind,
    message: str,
    *,
    python_type: str = "",
    tb: str = "",
    parameter: str = "",
    details: Mapping[str, str] | None = None,
) -> bytes:
    """The Error frame answering exchange `fid` (see :func:`error_message`)."""
    err = error_message(kind, message, python_type=python_type, tb=tb, parameter=parameter, details=details)
    return error_reply(fid, err)


def encoding_error(fid: int, e: EncodingError) -> bytes:
    """The Error frame of a value that could not be encoded (see :func:`encoding_error_message`)."""
    return error_reply(fid, encoding_error_message(e))


def encoding_error_message(e: EncodingError) -> pb.Error:
    """The Error of a value that could not be encoded: ENCODING, or
    SHARED_MEMORY_EXHAUSTED (with `requested`, `capacity`, `in_use`) when
    the worker's arena was full."""
    if isinstance(e, SharedMemoryExhausted):
        return error_message(
            pb.ERROR_KIND_SHARED_MEMORY_EXHAUSTED,
            str(e),
            python_type=e.python_type,
            details={
                "requested": str(e.requested),
                "capacity": str(e.capacity),
                "in_use": str(e.in_use),
                "path": e.path,
            },
        )
    return error_message(pb.ERROR_KIND_ENCODING, str(e), python_type=e.python_type, details={"path": e.path})


def release_shared(offsets: Iterable[int]) -> bytes:
    """A ReleaseShared (id 0): one reference given back per offset (both ways)."""
    return encode(pb.Frame(id=0, release_shared=pb.ReleaseShared(offsets=offsets)))


def _slot(mapping: Mapping[str, pb.Value], key: str, path: str) -> pb.Value:
    """The Value under `key` of a message's map field: an EncodingError at
    `path` when `key` is a str with a lone surrogate (not valid UTF-8)."""
    try:
        return mapping[key]
    except UnicodeEncodeError as e:
        err = surrogate_error(key, e)
        err.path = path
        err.reason = f"{err.reason} at {path}"
        raise err from None


def _sized(fid: int, body: bytes, limit: int) -> bytes:
    if len(body) > limit:
        return error(
            fid,
            pb.ERROR_KIND_PAYLOAD_TOO_LARGE,
            f"reply of {len(body)} bytes exceeds max_frame_bytes ({limit})",
            details={"size": str(len(body)), "limit": str(limit)},
        )
    return pack_len(len(body)) + body


def _can_mark(e: EncodingError, unserializable: str) -> bool:
    """Whether a value that failed to encode with `e` is walked again, its
    objects converted: in the ``marker`` mode (what conversion cannot help
    becomes a marker) and the ``error`` mode (it fails the value), when the
    walk can help."""
    return unserializable != "ref" and _graceful.recoverable(e)


def _value_bytes(value: Any, unserializable: str, root: str) -> tuple[bytes, list[int] | None]:
    """A tool's result `value` (not a scalar: those have their fast path) as
    the bytes of a Value, and the WORKER references its encoding added. Raises
    EncodingError. `unserializable` as for :func:`result`."""

    def build() -> bytes:
        v = pb.Value()
        if unserializable == "ref":
            _ffi.encode_graceful(value, v, root)
        else:
            encode_into(value, v, root=root)
        return v.SerializeToString()

    try:
        return _shm.collect(build)
    except EncodingError as e:
        if not _can_mark(e, unserializable):
            raise

    def build_marked() -> bytes:
        v = pb.Value()
        _graceful.encode_with_markers(value, v, root, strict=unserializable == "error")
        return v.SerializeToString()

    return _shm.collect(build_marked)


def _timing_field(timing: list[int], encode_start: int) -> bytes:
    """The Result's WorkerTiming field (2) of a run timed as `timing` (see :func:`result`)."""
    start, bound, ran = timing
    wt = (
        b"\x08" + varint(max(0, bound - start))
        + b"\x10" + varint(max(0, ran - bound))
        + b"\x18" + varint(max(0, time.perf_counter_ns() - encode_start))
    )
    return b"\x12" + varint(len(wt)) + wt


def result(
    fid: int, value: Any, limit: int, unserializable: str = "error", timing: list[int] | None = None
) -> bytes:
    """The Result frame for `value`, or the Error frame saying why it cannot
    be sent (ENCODING, or PAYLOAD_TOO_LARGE past `limit` bytes).
    `unserializable` (``error``, ``marker``, ``ref``): what becomes of objects
    without a wire form (see ``serialization``, ``_graceful``); FFI results use ``ref``. The
    marker walk only runs when the plain encoding failed. `timing`:
    perf_counter_ns() at the run's start, after binding and after the tool,
    sent as the Result's WorkerTiming with the encoding's own time."""
    encode_start = time.perf_counter_ns() if timing is not None else 0
    refs: list[int] | None = None
    if value is None:
        vb = NULL_VALUE_BYTES
    elif (vb := scalar_value_bytes(value)) is None:  # type: ignore[assignment]
        try:
            vb, refs = _value_bytes(value, unserializable, "result")
        except EncodingError as e:
            return encoding_error(fid, e)
    r = b"\x0a" + varint(len(vb)) + vb
    if timing is not None:
        r += _timing_field(timing, encode_start)
    body = b"\x08" + varint(fid) + b"\x1a" + varint(len(r)) + r
    if refs and len(body) > limit:
        # A reply too large is an Error instead: its regions are not sent.
        _shm.unsend(refs)
    return _sized(fid, body, limit)


def batch_result(
    fid: int,
    values: Sequence[Any],
    errors: Mapping[int, pb.Error],
    limit: int,
    unserializable: str = "error",
    timing: list[int] | None = None,
) -> bytes:
    """The Result frame answering a batch: one ``items`` entry (a
    BatchOutcome) per call, in order: ``errors[i]`` when call i has an error,
    else ``values[i]``, encoded as :func:`result` encodes a value; one that
    cannot be encoded is that call's ENCODING error, the others go on. The
    Error frame PAYLOAD_TOO_LARGE when the whole exceeds `limit` bytes.
    `unserializable` and `timing` as for :func:`result`."""
    encode_start = time.perf_counter_ns() if timing is not None else 0
    refs: list[int] = []
    parts: list[bytes] = []
    for i, value in enumerate(values):
        err = errors.get(i)
        if err is None:
            if value is None:
                vb = NULL_VALUE_BYTES
            elif (vb := scalar_value_bytes(value)) is None:  # type: ignore[assignment]
                try:
                    vb, value_refs = _value_bytes(value, unserializable, f"result[{i}]")
                except EncodingError as e:
                    err = encoding_error_message(e)
                else:
                    refs += value_refs or ()
        # A BatchOutcome (value: field 1, error: 2) in Result.items (field 3).
        if err is None:
            ob = b"\x0a" + varint(len(vb)) + vb
        else:
            eb = err.SerializeToString()
            ob = b"\x12" + varint(len(eb)) + eb
        parts += (b"\x1a", varint(len(ob)), ob)
    if timing is not None:
        parts.append(_timing_field(timing, encode_start))
    # Joined once: growing one bytes object would copy it at every item.
    r = b"".join(parts)
    body = b"\x08" + varint(fid) + b"\x1a" + varint(len(r)) + r
    if refs and len(body) > limit:
        _shm.unsend(refs)
    return _sized(fid, body, limit)


def chunk(
    fid: int,
    seq: int,
    data: Any,
    has_value: bool,
    is_final: bool,
    metadata: Any,
    limit: int,
    unserializable: str = "error",
) -> bytes:
    """The Chunk frame `seq` of stream `fid` (`has_value`: `data` is its item;
    `unserializable` as for :func:`result`, for the item only: metadata must
    encode). Raises EncodingError, or TooLarge past `limit` bytes."""
    refs: list[int] | None = None
    if has_value and not metadata and (vb := scalar_value_bytes(data)) is not None:
        # Chunk fields by hand, in field order: seq 1 (absent when 0), value 2, is_final 3.
        cb = b"\x12" + varint(len(vb)) + vb
        if seq:
            cb = b"\x08" + varint(seq) + cb
        if is_final:
            cb += b"\x18\x01"
    else:
        root = "chunk" if unserializable == "ref" else f"chunk[{seq}]"
        marked = False
        value_failed = False

        def build() -> bytes:
            nonlocal value_failed
            c = pb.Chunk(seq=seq, is_final=is_final)
            if has_value:
                try:
                    if marked:
                        _graceful.encode_with_markers(data, c.value, root, strict=unserializable == "error")
                    elif unserializable == "ref":
                        _ffi.encode_graceful(data, c.value, root)
                    else:
                        encode_into(data, c.value, root=root)
                except EncodingError:
                    value_failed = True
                    raise
            if metadata:
                for k, mv in metadata.items():
                    key = str(k)
                    slot = _slot(c.metadata, key, f"chunk[{seq}].metadata<key {key!r}>")
                    encode_into(mv, slot, root=f"chunk[{seq}].metadata[{k!r}]")
            return c.SerializeToString()

        try:
            cb, refs = _shm.collect(build)
        except EncodingError as e:
            if not (value_failed and _can_mark(e, unserializable)):
                raise
            marked = True
            cb, refs = _shm.collect(build)
    body = b"\x08" + varint(fid) + b'"' + varint(len(cb)) + cb
    if len(body) > limit:
        _shm.unsend(refs)
        raise TooLarge(f"chunk {seq} of {len(body)} bytes exceeds max_frame_bytes ({limit})", size=len(body), limit=limit)
    return pack_len(len(body)) + body


def host_call(
    fid: int,
    session_id: str,
    tool: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    timeout_ms: int,
    parent_request_id: int = 0,
    graceful: bool = False,
    traceparent: str = "",
    correlation_id: str | None = None,
) -> bytes:
    """The HostCall frame `fid` calling host tool `tool` (for request
    `parent_request_id`, 0 for none). Raises EncodingError naming the argument
    that has no wire form (`graceful`: such objects become refs, as in a host
    callback's arguments)."""
    frame = pb.Frame()
    hc = frame.host_call
    try:
        hc.session_id = session_id
        hc.tool = tool
    except UnicodeEncodeError:
        raise EncodingError(
            f"host tool name or session id is not valid UTF-8: {safe_text(tool)!r}", python_type="str"
        ) from None
    hc.timeout_ms = timeout_ms
    if traceparent:
        hc.traceparent = traceparent
    if correlation_id:
        hc.correlation_id = safe_text(correlation_id)
    if parent_request_id:
        hc.parent_request_id = parent_request_id

    def build() -> bytes:
        for i, a in enumerate(args):
            if graceful:
                _ffi.encode_graceful(a, hc.args.add(), f"{tool}() args[{i}]")
            else:
                encode_into(a, hc.args.add(), root=f"{tool}() args[{i}]")
        for k, v in kwargs.items():
            encode_into(v, _slot(hc.kwargs, k, f"{tool}() <keyword {k!r}>"), root=f"{tool}() {k}")
        frame.id = fid
        return encode(frame)

    return _shm.collect(build)[0]


def pong(fid: int, sent_unix_nanos: int, in_flight: int) -> bytes:
    """The Pong answering Ping `fid`."""
    return encode(pb.Frame(id=fid, pong=pb.Pong(sent_unix_nanos=sent_unix_nanos, in_flight=in_flight)))


def telemetry(fid: int, event: pb.TelemetryEvent) -> bytes:
    """A TelemetryEvent frame (`fid`: the request it belongs to, 0 for none)."""
    return encode(pb.Frame(id=fid, telemetry=event))


# ------------------------------------------------------------ host -> worker


def execute(
    fid: int,
    tool: str,
    *,
    args: Iterable[pb.Value] = (),
    kwargs: Mapping[str, pb.Value] | None = None,
    session_id: str = "",
    stream: bool = False,
    stream_window: int = 0,
    metadata: Mapping[str, str] | None = None,
    timeout_ms: int = 0,
    batch: Iterable[pb.BatchCall] = (),
) -> pb.Frame:
    """An Execute: run `tool` with encoded `args` and `kwargs`, or (`batch`)
    with the calls of a batch."""
    ex = pb.Execute(
        tool=tool,
        session_id=session_id,
        args=args,
        stream=stream,
        stream_window=stream_window,
        metadata=metadata or {},
        timeout_ms=timeout_ms,
        batch=batch,
    )
    for k, v in (kwargs or {}).items():
        ex.kwargs[k].CopyFrom(v)
    return pb.Frame(id=fid, execute=ex)


def cancel(fid: int, reason: str = "") -> pb.Frame:
    """A Cancel of request `fid`."""
    return pb.Frame(id=fid, cancel=pb.Cancel(reason=reason))


def credit(fid: int, chunks: int) -> pb.Frame:
    """A Credit of `chunks` more chunks for stream `fid`."""
    return pb.Frame(id=fid, credit=pb.Credit(chunks=chunks))


def ping(fid: int, sent_unix_nanos: int = 0) -> pb.Frame:
    """A Ping; the worker answers it with a Pong of the same id."""
    return pb.Frame(id=fid, ping=pb.Ping(sent_unix_nanos=sent_unix_nanos))


def release_session(fid: int, session_id: str) -> pb.Frame:
    """A ReleaseSession: the session's refs and watches go."""
    return pb.Frame(id=fid, release_session=pb.ReleaseSession(session_id=session_id))


def release_ref(fid: int, session_id: str, ref_id: str) -> pb.Frame:
    """A ReleaseRef of one ref of a session."""
    return pb.Frame(id=fid, release_ref=pb.ReleaseRef(session_id=session_id, ref_id=ref_id))


def shutdown(fid: int = 0, grace_ms: int = 0) -> pb.Frame:
    """A Shutdown: finish what runs within `grace_ms`, then exit."""
    return pb.Frame(id=fid, shutdown=pb.Shutdown(grace_ms=grace_ms))


def host_call_result(fid: int, *, value: pb.Value | None = None, error: pb.Error | None = None) -> pb.Frame:
    """The host's answer to HostCall `fid`: its value, or its error (neither: no outcome)."""
    res = pb.HostCallResult()
    if error is not None:
        res.error.CopyFrom(error)
    elif value is not None:
        res.value.CopyFrom(value)
    return pb.Frame(id=fid, host_call_result=res)


def variable_update(fid: int, update: pb.VariableUpdate) -> pb.Frame:
    """A VariableUpdate for a watch (`fid` is 0: updates answer no exchange)."""
    return pb.Frame(id=fid, variable_update=update)
