"""Per-request context handed to adapter instances."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["SessionContext"]


class _CancelSource(Protocol):
    cancelled: bool


class SessionContext:
    """What a tool knows about the call it is serving.

    A new context is built for every request and injected into the new adapter
    instance before ``initialize()`` runs.
    """

    __slots__ = ("session_id", "_metadata", "_metadata_dict", "_request", "elixir_tools", "host_tools")

    def __init__(
        self,
        session_id: str = "",
        request_metadata: Mapping[str, str] | None = None,
        *,
        _request: _CancelSource | None = None,
    ) -> None:
        self.session_id: str = session_id
        self._metadata = request_metadata
        self._metadata_dict: dict[str, str] | None = None
        self._request = _request
        # Tools the host exposes to Python; filled once the callback registry exists.
        self.elixir_tools: dict[str, Any] = {}
        self.host_tools: dict[str, Any] = self.elixir_tools

    @property
    def request_metadata(self) -> dict[str, str]:
        """Request metadata (trace context and the like) as a plain dict."""
        d = self._metadata_dict
        if d is None:
            d = dict(self._metadata) if self._metadata else {}
            self._metadata_dict = d
        return d

    @property
    def cancelled(self) -> bool:
        """True once the host cancelled the request this context belongs to."""
        req = self._request
        return req is not None and req.cancelled

    def is_cancelled(self) -> bool:
        """Same as :attr:`cancelled`, for call sites that prefer a method."""
        req = self._request
        return req is not None and req.cancelled

    def call_host_tool(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call a tool registered on the host side (not available yet)."""
        raise NotImplementedError(
            f"calling host tool {name!r} from Python is not supported yet: "
            "the snakepit callback registry (HostCall frames) is not implemented in this bridge version"
        )

    def call_elixir_tool(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Alias of :meth:`call_host_tool`, kept for adapters written for the Elixir host."""
        return self.call_host_tool(name, *args, **kwargs)

    def __repr__(self) -> str:
        return f"SessionContext(session_id={self.session_id!r}, cancelled={self.cancelled})"
