"""The client's exceptions, and the one place a gRPC failure becomes one.

Every failure of a call is a :class:`SnakepitError` whose ``kind`` is the
label snakepit itself uses (``Error::outcome()`` on the host:
``python_exception``, ``unknown_tool``, ``bad_arguments``, ``worker_busy``,
``timeout``, ...), plus ``unauthenticated`` for a missing or wrong token and
``unavailable`` when the server cannot be reached. The server puts the kind,
message, Python type, traceback and parameter in a ``google.rpc.ErrorInfo``
(domain ``snakepit``) inside the ``grpc-status-details-bin`` trailer;
:func:`from_rpc_error` reads it, and falls back on the status code when the
failure never reached the server (a transport failure, a client-side deadline).
"""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "BadArgumentsError",
    "CancelledError",
    "DeadlineExceeded",
    "EncodingError",
    "InternalError",
    "NotFoundError",
    "PythonError",
    "RefNotFoundError",
    "ResourceExhaustedError",
    "SessionNotFoundError",
    "SnakepitError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnknownToolError",
    "VariableError",
    "WorkerBusyError",
    "WorkerCrashedError",
    "error_class",
    "from_rpc_error",
]

DOMAIN = "snakepit"
DETAILS_TRAILER = "grpc-status-details-bin"
_ERROR_INFO = error_details_pb2.ErrorInfo.DESCRIPTOR.full_name


class SnakepitError(Exception):
    """A call failed.

    ``kind`` is snakepit's label for what went wrong; ``message`` says it in
    words; when Python raised, ``python_type`` and ``traceback`` are Python's
    (the traceback's last 4 KiB); ``parameter`` names the argument at fault
    when there is one; ``code`` is the gRPC status code (``None`` when the
    client refused the call itself); ``details`` holds every field the server
    sent.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        python_type: str = "",
        traceback: str = "",
        parameter: str = "",
        code: grpc.StatusCode | None = None,
        details: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.python_type = python_type
        self.traceback = traceback
        self.parameter = parameter
        self.code = code
        self.details: dict[str, str] = dict(details or {})

    def __str__(self) -> str:
        if self.python_type:
            return f"{self.kind}: {self.python_type}: {self.message}"
        return f"{self.kind}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields: pickle (multiprocessing, concurrent.futures) needs help.
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls: type[SnakepitError], message: str, state: dict[str, Any]) -> SnakepitError:
    err = cls(message, kind=state.get("kind", ""))
    err.__dict__.update(state)
    return err


class PythonError(SnakepitError):
    """Python raised (``python_exception``, and the recognised ML failures
    ``shape_mismatch``, ``out_of_memory``, ``dtype_mismatch``)."""


class NotFoundError(SnakepitError):
    """No such tool, pool, session, ref or variable."""


class UnknownToolError(NotFoundError):
    """The pool's adapter has no tool of that name (``unknown_tool``)."""


class RefNotFoundError(NotFoundError):
    """The ref was released, evicted or expired, or never existed (``ref_not_found``)."""


class SessionNotFoundError(NotFoundError):
    """The session was released or expired, or never existed (``session_not_found``)."""


class BadArgumentsError(SnakepitError):
    """The arguments did not fit (``bad_arguments``; ``session_mismatch``,
    ``conversion``); ``parameter`` names the culprit when there is one."""


class EncodingError(BadArgumentsError):
    """A value has no wire form (``encoding``): an unsupported type, a ``str``
    with a lone surrogate, or containers nested deeper than a message can
    carry. Raised by the client before sending, or by the server."""


class VariableError(SnakepitError):
    """A session variable's value broke its type or constraints, or the tool
    needs variables the session lacks (``variable``, ``missing_variables``)."""


class UnavailableError(SnakepitError):
    """Nothing can run the call now: the server cannot be reached
    (``unavailable``), the pool is degraded or shutting down, its workers
    did not start."""


class WorkerBusyError(UnavailableError):
    """A ``strict_fail_fast`` session's worker is busy (``worker_busy``)."""


class WorkerCrashedError(SnakepitError):
    """The worker running the call died (``worker_crashed``), or a strict
    session's worker is gone with its state (``session_worker_unavailable``)."""


class ResourceExhaustedError(SnakepitError):
    """A limit was reached: the pool's queue (``saturated``), sessions
    (``session_quota_exceeded``), a message's size (``payload_too_large``),
    a pool's shared memory (``shared_memory_exhausted``), memory
    (``out_of_memory`` is a :class:`PythonError`)."""


class DeadlineExceeded(SnakepitError):
    """The call's deadline passed (``timeout``) or it waited too long for a
    worker (``queue_timeout``); the worker was told to cancel it."""


class CancelledError(SnakepitError):
    """The call was cancelled (``cancelled``)."""


class UnauthenticatedError(SnakepitError):
    """The token is missing or wrong (``unauthenticated``)."""


class InternalError(SnakepitError):
    """The host failed in a way the caller cannot fix (``protocol``,
    ``host_tool``, ``config``, ``environment``, ...)."""


_BY_KIND: dict[str, type[SnakepitError]] = {
    "python_exception": PythonError,
    "shape_mismatch": PythonError,
    "out_of_memory": PythonError,
    "dtype_mismatch": PythonError,
    "unknown_tool": UnknownToolError,
    "unknown_pool": NotFoundError,
    "ref_not_found": RefNotFoundError,
    "session_not_found": SessionNotFoundError,
    "not_found": NotFoundError,
    "bad_arguments": BadArgumentsError,
    "session_mismatch": BadArgumentsError,
    "conversion": BadArgumentsError,
    "encoding": EncodingError,
    "variable": VariableError,
    "missing_variables": VariableError,
    "worker_busy": WorkerBusyError,
    "pool_degraded": UnavailableError,
    "shutting_down": UnavailableError,
    "start_failed": UnavailableError,
    "unavailable": UnavailableError,
    "worker_crashed": WorkerCrashedError,
    "session_worker_unavailable": WorkerCrashedError,
    "saturated": ResourceExhaustedError,
    "session_quota_exceeded": ResourceExhaustedError,
    "payload_too_large": ResourceExhaustedError,
    "shared_memory_exhausted": ResourceExhaustedError,
    "resource_exhausted": ResourceExhaustedError,
    "timeout": DeadlineExceeded,
    "queue_timeout": DeadlineExceeded,
    "cancelled": CancelledError,
    "unauthenticated": UnauthenticatedError,
    "host_tool": InternalError,
    "protocol": InternalError,
    "session_cleanup_failed": InternalError,
    "config": InternalError,
    "environment": InternalError,
    "untrusted_path": InternalError,
    "internal": InternalError,
}

# The kind of a failure that carries no ErrorInfo: what its status code says.
_KIND_BY_CODE: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.DEADLINE_EXCEEDED: "timeout",
    grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
    grpc.StatusCode.UNAVAILABLE: "unavailable",
    grpc.StatusCode.CANCELLED: "cancelled",
    grpc.StatusCode.NOT_FOUND: "not_found",
    grpc.StatusCode.INVALID_ARGUMENT: "bad_arguments",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "resource_exhausted",
    grpc.StatusCode.PERMISSION_DENIED: "unauthenticated",
}


def error_class(kind: str) -> type[SnakepitError]:
    """The exception class of a kind (:class:`SnakepitError` for one it does not know)."""
    return _BY_KIND.get(kind, SnakepitError)


def _error_info(trailers: Any) -> dict[str, str] | None:
    """The metadata of the snakepit ErrorInfo in a call's trailers, if any."""
    for key, value in trailers or ():
        if key != DETAILS_TRAILER or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:  # noqa: BLE001 - a malformed trailer is no ErrorInfo
            return None
        for detail in status.details:
            if detail.TypeName() != _ERROR_INFO:
                continue
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == DOMAIN:
                fields = dict(info.metadata)
                fields.setdefault("kind", info.reason.lower())
                return fields
    return None


def from_rpc_error(err: grpc.RpcError) -> SnakepitError:
    """The :class:`SnakepitError` for a failed call (sync or ``grpc.aio``)."""
    call: Any = err  # a grpc.Call (sync) or grpc.aio.AioRpcError: both have these
    code: grpc.StatusCode | None = call.code() if callable(getattr(call, "code", None)) else None
    message: str = (call.details() if callable(getattr(call, "details", None)) else "") or ""
    trailers = call.trailing_metadata() if callable(getattr(call, "trailing_metadata", None)) else None
    fields = _error_info(trailers)
    if fields is None:
        kind = _KIND_BY_CODE.get(code, "internal") if code is not None else "internal"
        fields = {"kind": kind, "message": message or (code.name.lower() if code else "failed")}
    kind = fields.get("kind", "internal")
    return error_class(kind)(
        fields.get("message") or message,
        kind=kind,
        python_type=fields.get("python_type", ""),
        traceback=fields.get("traceback", ""),
        parameter=fields.get("parameter", ""),
        code=code,
        details=fields,
    )
