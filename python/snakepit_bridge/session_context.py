"""Per-request context handed to adapter instances: the session, the request's
metadata and cancellation, calls to host tools and the session's variables."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from .errors import HostToolError, HostToolNotFound

__all__ = ["SessionContext"]


class _CancelSource(Protocol):
    cancelled: bool


class _HostLink(Protocol):
    """What the worker offers a context to reach the host (see ``_worker._Worker``)."""

    def host_call(
        self,
        request: Any,
        session_id: str,
        tool: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout: float | None,
    ) -> Any: ...

    def watch(
        self,
        request: Any,
        session_id: str,
        identifiers: list[str],
        include_initial: bool,
        callback: Callable[[Any, Any, dict[str, str]], Any],
        *,
        timeout: float | None,
    ) -> str: ...

    def unwatch(self, request: Any, session_id: str, watch_id: str, *, timeout: float | None) -> None: ...


def _name_of(info: Any) -> Any:
    return info.get("name") if isinstance(info, Mapping) else None


class SessionContext:
    """What a tool knows about the call it is serving, and its way back to the host.

    A new context is built for every request and injected into the new adapter
    instance before ``initialize()`` runs. Host tools and session variables
    are reached through the host: each call below sends a host call and waits
    for its answer, raising a :class:`~snakepit_bridge.errors.HostToolError`
    (or a subclass) when the host reports a failure. A context built by hand,
    outside a worker, has no host: ``host_tools`` is empty and every call
    raises ``HostToolError`` with kind ``"unavailable"``.
    """

    __slots__ = ("session_id", "_metadata", "_metadata_dict", "_request", "_host", "_host_tools")

    def __init__(
        self,
        session_id: str = "",
        request_metadata: Mapping[str, str] | None = None,
        *,
        _request: _CancelSource | None = None,
        _host: _HostLink | None = None,
    ) -> None:
        self.session_id: str = session_id
        self._metadata = request_metadata
        self._metadata_dict: dict[str, str] | None = None
        self._request = _request
        self._host = _host
        self._host_tools: dict[str, Any] | None = None

    # ------------------------------------------------------------ request

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

    # --------------------------------------------------------- host tools

    def _link(self, tool: str) -> _HostLink:
        host = self._host
        if host is None:
            raise HostToolError(
                f"cannot call host tool {tool!r}: this session context has no host connection "
                "(it was not created by a snakepit worker)",
                kind="unavailable",
                tool=tool,
            )
        return host

    @property
    def host_tools(self) -> dict[str, Any]:
        """The host tools this session may call, as name -> spec.

        A spec is a dict with ``name``, ``description`` and ``parameters`` (a
        list of dicts with ``name``, ``type``, ``required``, ``description``).
        Fetched from the host on first access and kept for the rest of the
        request; empty outside a worker.
        """
        tools = self._host_tools
        if tools is None:
            tools = {}
            if self._host is not None:
                listed = self.call_host_tool("snakepit.host_tools.list")
                if isinstance(listed, Mapping):
                    tools = dict(listed)
                elif isinstance(listed, Iterable):
                    tools = {name: spec for spec in listed if (name := _name_of(spec)) is not None}
            self._host_tools = tools
        return tools

    @host_tools.setter
    def host_tools(self, tools: Mapping[str, Any]) -> None:
        self._host_tools = dict(tools)

    @property
    def elixir_tools(self) -> dict[str, Any]:
        """Alias of :attr:`host_tools`, kept for adapters written for the Elixir host."""
        return self.host_tools

    @elixir_tools.setter
    def elixir_tools(self, tools: Mapping[str, Any]) -> None:
        self._host_tools = dict(tools)

    def call_host_tool(self, name: str, /, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Call host tool ``name`` with these arguments and return its result.

        The calling thread waits for the answer; meanwhile the request gives
        its capacity slot back, so the host tool may call tools of this worker
        in turn. ``timeout`` (seconds) defaults to what is left of the
        request's deadline, or 30 s when it has none; past it
        :class:`~snakepit_bridge.errors.HostCallTimeout` is raised. Failures
        reported by the host raise a
        :class:`~snakepit_bridge.errors.HostToolError` or one of its
        subclasses; a call the host refused because too many of this
        worker's host calls were running raises
        :class:`~snakepit_bridge.errors.HostCallRejected`. (A host tool parameter named ``timeout`` cannot be passed
        this way, as the keyword is this call's own.)
        """
        return self._link(name).host_call(self._request, self.session_id, name, args, kwargs, timeout=timeout)

    def call_elixir_tool(self, name: str, /, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Alias of :meth:`call_host_tool`, kept for adapters written for the Elixir host."""
        return self.call_host_tool(name, *args, timeout=timeout, **kwargs)

    # ---------------------------------------------------------- variables

    def register_variable(
        self,
        name: str,
        var_type: str,
        initial_value: Any,
        constraints: Mapping[str, Any] | None = None,
        *,
        description: str = "",
    ) -> str:
        """Create session variable ``name`` and return its id.

        ``var_type`` is one of ``float integer string boolean choice embedding
        tensor``; ``constraints`` may hold e.g. ``min``/``max``, ``choices``,
        ``dimension`` or ``shape``. A value that breaks them raises
        :class:`~snakepit_bridge.errors.VariableConstraintError`.
        """
        info = self.call_host_tool(
            "snakepit.variables.register",
            name=name,
            type=var_type,
            initial_value=initial_value,
            constraints=dict(constraints) if constraints else {},
            description=description,
        )
        variable_id: str = info["id"] if isinstance(info, Mapping) else info
        return variable_id

    def get_variable(self, identifier: str) -> Any:
        """The current value of the variable with this name or id.

        An unknown variable raises :class:`~snakepit_bridge.errors.HostToolNotFound`.
        """
        return self.get_variable_info(identifier)["value"]

    def get_variable_info(self, identifier: str) -> dict[str, Any]:
        """The variable with this name or id as a dict: ``id name type value constraints version description``."""
        info: dict[str, Any] = self.call_host_tool("snakepit.variables.get", identifier=identifier)
        return info

    def set_variable(self, identifier: str, value: Any, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Give the variable with this name or id a new value and return the updated variable.

        ``metadata`` (values are sent as text) reaches the watchers of the
        variable. A value that breaks the variable's type or constraints raises
        :class:`~snakepit_bridge.errors.VariableConstraintError`.
        """
        meta = {str(k): str(v) for k, v in metadata.items()} if metadata else {}
        info: dict[str, Any] = self.call_host_tool(
            "snakepit.variables.set", identifier=identifier, value=value, metadata=meta
        )
        return info

    def list_variables(self) -> dict[str, Any]:
        """The session's variables as name -> current value."""
        listed = self.call_host_tool("snakepit.variables.list")
        if isinstance(listed, Mapping):
            listed = listed.values()
        return {info["name"]: info.get("value") for info in listed if isinstance(info, Mapping) and "name" in info}

    def delete_variable(self, identifier: str) -> None:
        """Delete the variable with this name or id."""
        self.call_host_tool("snakepit.variables.delete", identifier=identifier)

    def watch_variable(
        self,
        identifier: str,
        callback: Callable[[Any, Any, dict[str, str]], Any],
        *,
        include_initial: bool = False,
    ) -> str:
        """Call ``callback(old_value, new_value, metadata)`` on every change of a variable; return the watch id.

        The watch belongs to the session in this worker and outlives the
        request: it lasts until :meth:`unwatch_variable` or the session's
        release. Callbacks run one at a time on a thread of their own (an
        exception is logged to stderr); ``metadata`` is the metadata of the
        change plus ``source`` (``host``, ``python`` or ``initial``),
        ``name``, ``variable_id``, ``version`` and ``watch_id`` when the change
        did not set those keys itself. With ``include_initial`` the current
        value arrives first, with source ``initial``.
        """
        host = self._link("snakepit.variables.watch")
        return host.watch(self._request, self.session_id, [identifier], include_initial, callback, timeout=None)

    def unwatch_variable(self, watch_id: str) -> None:
        """Stop a watch made with :meth:`watch_variable`; no callback of it runs afterwards."""
        host = self._link("snakepit.variables.unwatch")
        host.unwatch(self._request, self.session_id, watch_id, timeout=None)

    def __getitem__(self, name: str) -> Any:
        """``ctx["name"]`` is :meth:`get_variable`, raising ``KeyError`` for an unknown variable."""
        try:
            return self.get_variable(name)
        except HostToolNotFound as e:
            if e.kind == "unknown_tool":
                raise
            raise KeyError(name) from e

    def __setitem__(self, name: str, value: Any) -> None:
        """``ctx["name"] = value`` is :meth:`set_variable`, raising ``KeyError`` for an unknown variable."""
        try:
            self.set_variable(name, value)
        except HostToolNotFound as e:
            if e.kind == "unknown_tool":
                raise
            raise KeyError(name) from e

    def __contains__(self, name: object) -> bool:
        """``"name" in ctx`` tells whether the session has that variable."""
        if not isinstance(name, str):
            return False
        try:
            self.get_variable_info(name)
        except HostToolNotFound as e:
            if e.kind == "unknown_tool":
                raise
            return False
        return True

    # ------------------------------------------------------------ lifetime

    def cleanup(self) -> None:
        """Forget what this context cached: the host tool list and the metadata dict.

        The next use fetches them again. Nothing on the host changes: the
        session belongs to the host, and watches made through this context
        belong to the session (stop one with :meth:`unwatch_variable`). Safe
        to call more than once. The worker's own contexts need no call (they
        live for one request); it is there for contexts built by hand, and
        runs when a ``with SessionContext(...) as ctx:`` block ends.
        """
        self._host_tools = None
        self._metadata_dict = None

    def __enter__(self) -> SessionContext:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"SessionContext(session_id={self.session_id!r}, cancelled={self.cancelled})"
