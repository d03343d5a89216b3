"""Exceptions a tool sees when it calls the host.

Every failure of a host call raises a :class:`HostToolError` (a
``RuntimeError``); a few kinds have their own subclass so that adapters can
catch them with the built-in exception they resemble as well.

``kind`` is the host's error kind in lower case (``"host_tool"``,
``"not_found"``, ``"unknown_tool"``, ``"bad_arguments"``, ``"constraint"``,
``"timeout"``, ``"busy"``, ...) or one of the worker's own: ``"unavailable"`` (no host
connection, e.g. a context built by hand in a unit test) and
``"payload_too_large"`` (the call would exceed the frame limit).

:class:`HostCallRejected` (kind ``"busy"``) means the host refused to start
the call because too many host calls of this worker were already running; the
call had no effect, so it may be tried again later.

The universal FFI (``snakepit.ffi.*``, see ``docs/ffi-protocol.md``) adds the
exceptions of object refs (:class:`RefNotFoundError`,
:class:`SessionMismatchError`), of helpers (:class:`HelperNotFoundError`) and
:class:`HostError`, an exception of the host rebuilt in Python.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._codec import SharedMemoryExhausted

__all__ = [
    "DrainDeadlineExceeded",
    "HelperNotFoundError",
    "HostCallRejected",
    "HostCallTimeout",
    "HostError",
    "HostToolError",
    "HostToolNotFound",
    "RefNotFoundError",
    "SessionMismatchError",
    "SharedMemoryExhausted",
    "VariableConstraintError",
]


class HostToolError(RuntimeError):
    """A call from Python to a host tool failed.

    ``kind`` says how (see the module documentation), ``message`` what the
    host said, ``details`` carries its structured context (for a host tool
    that failed, ``details["kind"]`` says how), ``parameter`` names the
    argument or variable at fault when there is one, ``python_type`` and
    ``traceback`` describe a Python exception raised further down a nested
    call, and ``tool`` is the host tool that was called.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str = "host_tool",
        details: Mapping[str, str] | None = None,
        parameter: str = "",
        python_type: str = "",
        traceback: str = "",
        tool: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.details: dict[str, str] = dict(details) if details else {}
        self.parameter = parameter
        self.python_type = python_type
        self.traceback = traceback
        self.tool = tool

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, kind={self.kind!r})"


class HostToolNotFound(HostToolError):
    """The host has no such tool (kind ``unknown_tool``), or no such session or variable (kind ``not_found``)."""


class VariableConstraintError(HostToolError, ValueError):
    """A variable's new value broke its type or a constraint; ``parameter`` names the variable."""


class HostCallTimeout(HostToolError, TimeoutError):
    """The host did not answer in time, by the worker's clock or by the host's own (kind ``timeout``)."""


class HostCallRejected(HostToolError):
    """The host refused the call without running it (kind ``busy``): too many
    host calls of this worker were running already. Nothing happened; the
    caller may wait and call again, or do without."""


class RefNotFoundError(LookupError):
    """An object ref this worker does not hold (any more): released, evicted by
    the session's ``--max-refs``, expired by ``--ref-ttl-ms``, or never created.

    ``ref_id`` is the ref asked for, ``session_id`` the session of the call
    that asked, ``reason`` what became of it when known (``"released"``,
    ``"evicted"``, ``"expired"``, ``"session released"``) else ``""``.
    """

    def __init__(self, ref_id: str, session_id: str, reason: str = "") -> None:
        how = f"{reason}" if reason else "released, evicted, expired or never created"
        super().__init__(f"ref {ref_id!r} not found in session {session_id!r} ({how})")
        self.ref_id = ref_id
        self.session_id = session_id
        self.reason = reason


class SessionMismatchError(ValueError):
    """A ref of session ``ref_session`` was used in a call of session ``call_session``."""

    def __init__(self, ref_id: str, ref_session: str, call_session: str) -> None:
        super().__init__(
            f"ref {ref_id!r} belongs to session {ref_session!r}, not to the calling session {call_session!r}"
        )
        self.ref_id = ref_id
        self.ref_session = ref_session
        self.call_session = call_session


class HelperNotFoundError(LookupError):
    """An FFI helper (``file.function``) that is not allowed, or has no file or function."""

    def __init__(self, message: str, helper: str) -> None:
        super().__init__(message)
        self.helper = helper


class HostError(RuntimeError):
    """An error of the host handed to Python: the exception ``__exit__`` of a
    context manager driven over the FFI gets when the host's body failed with
    something that is not a builtin Python exception. ``python_type`` is the
    type the host named (if any), ``traceback`` the host's text of it."""

    def __init__(self, message: str = "", *, python_type: str = "", traceback: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.python_type = python_type
        self.traceback = traceback

    def __str__(self) -> str:
        return self.message


class DrainDeadlineExceeded(TimeoutError):
    """A generator called without streaming was still yielding when the call's deadline passed.

    Such a call answers with the list of the generator's items, so the worker
    collects them until the generator ends; past the deadline it stops,
    closes the generator and fails the call with this error (kind
    ``TIMEOUT``). ``tool`` is the tool, ``items`` how many items had come,
    ``timeout_ms`` the call's deadline. Call the tool as a stream to get an
    endless generator's items.
    """

    def __init__(self, tool: str, items: int, timeout_ms: int) -> None:
        super().__init__(
            f"tool {tool!r} returned a generator, called without streaming: {items} item(s) collected "
            f"and it had not ended when the call's deadline ({timeout_ms} ms) passed; call it as a stream"
        )
        self.tool = tool
        self.items = items
        self.timeout_ms = timeout_ms
