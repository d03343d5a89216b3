"""Exceptions a tool sees when it calls the host.

Every failure of a host call raises a :class:`HostToolError` (a
``RuntimeError``); a few kinds have their own subclass so that adapters can
catch them with the built-in exception they resemble as well.

``kind`` is the host's error kind in lower case (``"host_tool"``,
``"not_found"``, ``"unknown_tool"``, ``"bad_arguments"``, ``"constraint"``,
``"timeout"``, ...) or one of the worker's own: ``"unavailable"`` (no host
connection, e.g. a context built by hand in a unit test) and
``"payload_too_large"`` (the call would exceed the frame limit).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "HostCallTimeout",
    "HostToolError",
    "HostToolNotFound",
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
