"""The blocking client: :class:`Client`, its :class:`Session` and the
:class:`ItemStream` of a server stream.

A ``Client`` owns one gRPC channel. Tools run without a session; the
universal FFI operations called on the client itself (``client.call``,
``client.get``, ...) run in a session of the client's own, opened at the
first such call and released by ``close()``, so the refs they return stay
usable until then. ``client.session()`` opens a session of your own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Generic, TypeVar

import grpc

from . import _messages as msgs
from ._channel import ChannelSpec
from ._errors import SnakepitError, from_rpc_error
from ._proto import service_pb2 as svc
from ._stub import Stub
from ._types import Ref, StreamRef, Variable, VariableUpdate

__all__ = ["Client", "ItemStream", "Session"]

T = TypeVar("T")


class ItemStream(Generic[T]):
    """The items of a server stream, as they arrive.

    The server produces no faster than this is read (flow control reaches the
    worker). ``close()`` cancels the RPC, and so does leaving a ``with`` block,
    or dropping the stream (``break`` out of a ``for`` over it): the worker's
    generator gets ``GeneratorExit``. Failures raise :class:`SnakepitError`.
    """

    def __init__(self, call: Any, convert: Callable[[Any], T]) -> None:
        self._call = call
        self._convert = convert
        self._closed = False

    def __iter__(self) -> ItemStream[T]:
        return self

    def __next__(self) -> T:
        if self._closed:
            raise StopIteration
        try:
            msg = next(self._call)
        except StopIteration:
            self._closed = True
            raise
        except grpc.RpcError as e:
            self._closed = True
            raise from_rpc_error(e) from None
        return self._convert(msg)

    def close(self) -> None:
        """Cancel the RPC (nothing happens once it has ended)."""
        if not self._closed:
            self._closed = True
            self._call.cancel()

    cancel = close

    def __enter__(self) -> ItemStream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()


class _Connection:
    """A channel, its stub, the metadata every call carries and the default
    timeout; the one place calls are made and failures mapped."""

    def __init__(self, spec: ChannelSpec, timeout: float | None) -> None:
        self.channel = spec.sync_channel()
        self.stub = Stub(self.channel)
        self.metadata = spec.metadata()
        self.timeout = timeout

    def unary(self, rpc: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(self.stub, rpc)(
                request, timeout=self.timeout if timeout is None else timeout, metadata=self.metadata
            )
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def stream(self, rpc: str, request: Any, convert: Callable[[Any], T]) -> ItemStream[T]:
        # No default deadline: a stream lasts as long as its reader wants.
        return ItemStream(getattr(self.stub, rpc)(request, metadata=self.metadata), convert)


class Session(msgs.SessionBase):
    """A session on the server: calls in it share a worker's state (by
    affinity), refs and variables. Released on leaving its ``with`` block or
    by :meth:`release`; else it lives until the server's session TTL.

    ``id`` is the session's id, ``pool`` its default pool (``""``: the
    server's default), ``affinity`` its default affinity.
    """

    def __init__(self, conn: _Connection, info: svc.SessionInfo) -> None:
        super().__init__(info)
        self._conn = conn

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    # ------------------------------------------------------------- tools

    def execute(
        self,
        tool: str,
        /,
        *,
        pool: str | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Run ``tool`` in this session and return its result."""
        req = msgs.execute_request(tool, kwargs, pool=pool, session_id=self.id, idempotent=idempotent)
        return self._value(self._conn.unary("Execute", req, timeout))

    def stream(self, tool: str, /, *, pool: str | None = None, **kwargs: Any) -> ItemStream[Any]:
        """Run the streaming ``tool`` in this session; its items as they come."""
        req = msgs.execute_request(tool, kwargs, pool=pool, session_id=self.id)
        return self._conn.stream("ExecuteStream", req, self._value)

    # -------------------------------------------------------- universal FFI

    def call(self, module: str, function: str, /, *args: Any, **kwargs: Any) -> Any:
        """``module.function(*args, **kwargs)`` in a worker (``function`` may be dotted)."""
        req = msgs.ffi_call_request(self.id, module, function, args, kwargs)
        return self._value(self._conn.unary("FfiCall", req))

    def get(self, module: str, attr: str, /) -> Any:
        """``module.attr``."""
        return self._value(self._conn.unary("FfiGet", svc.FfiGetRequest(session_id=self.id, module=module, attr=attr)))

    def call_class(self, module: str, cls: str, /, *args: Any, **kwargs: Any) -> Any:
        """A new instance of ``module.cls`` (usually a :class:`Ref`)."""
        req = msgs.ffi_call_request(self.id, module, cls, args, kwargs)
        return self._value(self._conn.unary("FfiCallClass", req))

    def method(self, ref: Ref, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """``ref.name(*args, **kwargs)``."""
        req = msgs.ffi_method_request(self.id, ref, name, args, kwargs)
        return self._value(self._conn.unary("FfiMethod", req))

    def attr(self, ref: Ref, name: str, /) -> Any:
        """``ref.name``."""
        req = svc.FfiAttrRequest(session_id=self.id, target=msgs.object_ref(ref), name=name)
        return self._value(self._conn.unary("FfiAttr", req))

    def set_attr(self, ref: Ref, name: str, value: Any, /) -> None:
        """``ref.name = value``."""
        self._conn.unary("FfiSetAttr", msgs.ffi_set_attr_request(self.id, ref, name, value))

    def call_stream(self, module: str, function: str, /, *args: Any, **kwargs: Any) -> ItemStream[Any]:
        """Call ``module.function`` and stream the items of the iterable it returns."""
        req = msgs.ffi_call_request(self.id, module, function, args, kwargs)
        return self._conn.stream("FfiStream", req, self._value)

    def _ffi_next(self, stream: StreamRef, n: int) -> tuple[list[Any], bool]:
        return self._batch(self._conn.unary("FfiNext", msgs.ffi_next_request(self.id, stream, n)))

    def next(self, stream: StreamRef, n: int = 1, /) -> list[Any]:
        """Up to ``n`` more items of a :class:`StreamRef` (fewer once it is exhausted)."""
        return self._ffi_next(stream, n)[0]

    def release_ref(self, ref: Ref | StreamRef, /) -> None:
        """Drop an object or iterator kept in the worker; using it again
        raises :class:`RefNotFoundError`. Releasing twice is no error."""
        self._conn.unary("FfiReleaseRef", msgs.release_ref_request(self.id, ref))

    # ------------------------------------------------------------ variables

    def register_variable(
        self, name: str, type: str, initial: Any, /, *, description: str = "", **constraints: Any
    ) -> Variable:
        """Create a variable of ``type`` (float, integer, string, boolean,
        choice, embedding, tensor) with constraints such as ``min``, ``max``,
        ``choices``."""
        req = msgs.register_variable_request(self.id, name, type, initial, description, constraints)
        return self._variable(self._conn.unary("RegisterVariable", req))

    def get_variable_info(self, name: str, /) -> Variable:
        """The whole variable (by name or id): value, version, constraints..."""
        req = svc.VariableRequest(session_id=self.id, variable=name)
        return self._variable(self._conn.unary("GetVariable", req))

    def get_variable(self, name: str, /) -> Any:
        """A variable's value."""
        return self.get_variable_info(name).value

    def set_variable(self, name: str, value: Any, /) -> Variable:
        """Give a variable a new value (checked against its type and constraints)."""
        req = msgs.set_variable_request(self.id, name, value)
        return self._variable(self._conn.unary("SetVariable", req))

    def list_variables(self) -> dict[str, Any]:
        """``{name: value}`` of every variable of the session."""
        return self._values(self._conn.unary("ListVariables", svc.SessionRequest(session_id=self.id)))

    def watch_variables(self, *names: str, include_initial: bool = False) -> ItemStream[VariableUpdate]:
        """Changes of the named variables (all, when none is named) from now
        on, and first their current values with ``include_initial``."""
        req = svc.WatchVariablesRequest(session_id=self.id, variables=names, include_initial=include_initial)
        return self._conn.stream("WatchVariables", req, self._update)

    # ------------------------------------------------------------ lifecycle

    def info(self) -> dict[str, Any]:
        """The session as the server sees it: pool, affinity, metadata,
        ``created_unix_ms``, ``last_used_unix_ms``, ``pools``, ``variables``."""
        return msgs.message_dict(self._conn.unary("GetSession", svc.SessionRequest(session_id=self.id)))

    def release(self) -> None:
        """Release the session: every worker that ran it drops its state and
        refs. Releasing again does nothing."""
        if self._mark_released():
            self._conn.unary("ReleaseSession", svc.SessionRequest(session_id=self.id))


class Client:
    """A connection to ``snakepit serve``.

    ``target`` is ``"host:port"`` or ``"unix:/path/to.sock"``; ``token`` is
    sent as a bearer token; ``root_certificates`` (PEM bytes) turn on TLS,
    ``private_key`` and ``certificate_chain`` add a client certificate;
    ``timeout`` (seconds) is the deadline of every call that names none
    (streams have none); ``channel_options`` go to grpcio as they are.
    Close it, or use it as a context manager.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        root_certificates: bytes | None = None,
        timeout: float | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        spec = ChannelSpec(target, token, root_certificates, private_key, certificate_chain, tuple(channel_options))
        self.target = target
        self._conn = _Connection(spec, timeout)
        self._lock = threading.Lock()
        self._own_session: Session | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<Client {self.target}{' closed' if self._closed else ''}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the client's own session (if FFI calls opened one) and close the channel."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            session, self._own_session = self._own_session, None
        try:
            if session is not None:
                try:
                    session.release()
                except SnakepitError as e:
                    if e.kind not in msgs.GONE:
                        raise
        finally:
            self._conn.channel.close()

    # ------------------------------------------------------------- tools

    def execute(
        self,
        tool: str,
        /,
        *,
        pool: str | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Run ``tool`` (in ``pool``, else the default) and return its result.
        ``idempotent``: safe to run twice, so retried once if its worker dies."""
        req = msgs.execute_request(tool, kwargs, pool=pool, idempotent=idempotent)
        return msgs.value(self._conn.unary("Execute", req, timeout))

    def stream(self, tool: str, /, *, pool: str | None = None, **kwargs: Any) -> ItemStream[Any]:
        """Run the streaming ``tool``; an iterator of its items as they come."""
        req = msgs.execute_request(tool, kwargs, pool=pool)
        return self._conn.stream("ExecuteStream", req, msgs.value)

    def session(self, *, pool: str | None = None, affinity: str = "hint") -> Session:
        """Open a session; ``affinity`` is ``"hint"`` (prefer the session's
        worker), ``"strict_queue"`` (wait for it) or ``"strict_fail_fast"``
        (fail with ``worker_busy`` when it is busy)."""
        req = svc.CreateSessionRequest(pool=pool or "", affinity=msgs.affinity(affinity))
        return Session(self._conn, self._conn.unary("CreateSession", req))

    def status(self, pool: str | None = None) -> dict[str, dict[str, Any]]:
        """``{pool: {size, workers_up, in_flight, queued, degraded, workers: [...], tools: [...]}}``."""
        return msgs.pools_dict(self._conn.unary("PoolStatus", svc.PoolStatusRequest(pool=pool or "")))

    # ------------------------------------------- universal FFI, own session

    def _session(self) -> Session:
        with self._lock:
            if self._closed:
                raise ValueError("the client is closed")
            if self._own_session is None:
                self._own_session = self.session()
            return self._own_session

    def call(self, module: str, function: str, /, *args: Any, **kwargs: Any) -> Any:
        """``module.function(*args, **kwargs)``; see :meth:`Session.call`."""
        return self._session().call(module, function, *args, **kwargs)

    def get(self, module: str, attr: str, /) -> Any:
        """``module.attr``."""
        return self._session().get(module, attr)

    def call_class(self, module: str, cls: str, /, *args: Any, **kwargs: Any) -> Any:
        """A new instance of ``module.cls``."""
        return self._session().call_class(module, cls, *args, **kwargs)

    def method(self, ref: Ref, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """``ref.name(*args, **kwargs)``."""
        return self._session().method(ref, name, *args, **kwargs)

    def attr(self, ref: Ref, name: str, /) -> Any:
        """``ref.name``."""
        return self._session().attr(ref, name)

    def set_attr(self, ref: Ref, name: str, value: Any, /) -> None:
        """``ref.name = value``."""
        self._session().set_attr(ref, name, value)

    def call_stream(self, module: str, function: str, /, *args: Any, **kwargs: Any) -> ItemStream[Any]:
        """Call ``module.function`` and stream the items it returns."""
        return self._session().call_stream(module, function, *args, **kwargs)

    def next(self, stream: StreamRef, n: int = 1, /) -> list[Any]:
        """Up to ``n`` more items of a :class:`StreamRef`."""
        return self._session().next(stream, n)

    def release_ref(self, ref: Ref | StreamRef, /) -> None:
        """Drop an object or iterator kept in the worker."""
        self._session().release_ref(ref)
