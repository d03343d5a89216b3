"""The asyncio client (``grpc.aio``): :class:`AsyncClient`, its
:class:`AsyncSession` and :class:`AsyncItemStream`, with the methods of the
blocking ones (``_client.py``) as coroutines; streams are async iterators and
sessions async context managers. Requests and responses are built and read by
the same code (``_messages.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator, Sequence
from types import TracebackType
from typing import Any, Generic, TypeVar

import grpc
import grpc.aio

from . import _messages as msgs
from ._channel import ChannelSpec
from ._errors import SnakepitError, from_rpc_error
from ._proto import service_pb2 as svc
from ._stub import Stub
from ._types import Ref, StreamRef, Variable, VariableUpdate

__all__ = ["AsyncClient", "AsyncItemStream", "AsyncSession"]

T = TypeVar("T")


class AsyncItemStream(Generic[T]):
    """The items of a server stream, as they arrive (``async for``).

    Reading slowly slows the producer; ``await aclose()`` (or ``cancel()``,
    leaving an ``async with`` block, or dropping the stream) cancels the RPC
    and the worker's generator gets ``GeneratorExit``.
    """

    def __init__(
        self, call: Any, convert: Callable[[Any], T], *, start: Callable[[], Awaitable[Any]] | None = None
    ) -> None:
        # `start` makes the call at the first read, when making it needs an await.
        self._call = call
        self._start = start
        self._convert = convert
        self._closed = False

    def __aiter__(self) -> AsyncItemStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._closed:
            raise StopAsyncIteration
        try:
            if self._call is None and self._start is not None:
                self._call = await self._start()
            msg = await self._call.read()
        except grpc.RpcError as e:
            self._closed = True
            raise from_rpc_error(e) from None
        if msg is grpc.aio.EOF:
            self._closed = True
            raise StopAsyncIteration
        return self._convert(msg)

    def cancel(self) -> None:
        """Cancel the RPC (nothing happens once it has ended)."""
        if not self._closed:
            self._closed = True
            if self._call is not None:
                self._call.cancel()

    async def aclose(self) -> None:
        self.cancel()

    async def __aenter__(self) -> AsyncItemStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self.cancel()
            except RuntimeError:
                pass  # its event loop is gone, and the call with it


class _Connection:
    """The aio twin of ``_client._Connection``."""

    def __init__(self, spec: ChannelSpec, timeout: float | None) -> None:
        self.channel = spec.aio_channel()
        self.stub = Stub(self.channel)
        self.metadata = spec.metadata()
        self.timeout = timeout

    async def unary(self, rpc: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return await getattr(self.stub, rpc)(
                request, timeout=self.timeout if timeout is None else timeout, metadata=self.metadata
            )
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def open_stream(self, rpc: str, request: Any) -> Any:
        """The call of a server stream (no default deadline, as in ``_client``)."""
        return getattr(self.stub, rpc)(request, metadata=self.metadata)

    def stream(self, rpc: str, request: Any, convert: Callable[[Any], T]) -> AsyncItemStream[T]:
        return AsyncItemStream(self.open_stream(rpc, request), convert)


class AsyncSession(msgs.SessionBase):
    """A session (see :class:`snakepit_client.Session`), for ``async with``."""

    is_async = True

    def __init__(self, conn: _Connection, info: svc.SessionInfo) -> None:
        super().__init__(info)
        self._conn = conn

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()

    async def execute(
        self,
        tool: str,
        /,
        *,
        pool: str | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
        **kwargs: Any,
    ) -> Any:
        req = msgs.execute_request(tool, kwargs, pool=pool, session_id=self.id, idempotent=idempotent)
        return self._value(await self._conn.unary("Execute", req, timeout))

    def stream(self, tool: str, /, *, pool: str | None = None, **kwargs: Any) -> AsyncItemStream[Any]:
        req = msgs.execute_request(tool, kwargs, pool=pool, session_id=self.id)
        return self._conn.stream("ExecuteStream", req, self._value)

    async def call(self, module: str, function: str, /, *args: Any, **kwargs: Any) -> Any:
        req = msgs.ffi_call_request(self.id, module, function, args, kwargs)
        return self._value(await self._conn.unary("FfiCall", req))

    async def get(self, module: str, attr: str, /) -> Any:
        req = svc.FfiGetRequest(session_id=self.id, module=module, attr=attr)
        return self._value(await self._conn.unary("FfiGet", req))

    async def call_class(self, module: str, cls: str, /, *args: Any, **kwargs: Any) -> Any:
        req = msgs.ffi_call_request(self.id, module, cls, args, kwargs)
        return self._value(await self._conn.unary("FfiCallClass", req))

    async def method(self, ref: Ref, name: str, /, *args: Any, **kwargs: Any) -> Any:
        req = msgs.ffi_method_request(self.id, ref, name, args, kwargs)
        return self._value(await self._conn.unary("FfiMethod", req))

    async def attr(self, ref: Ref, name: str, /) -> Any:
        req = svc.FfiAttrRequest(session_id=self.id, target=msgs.object_ref(ref), name=name)
        return self._value(await self._conn.unary("FfiAttr", req))

    async def set_attr(self, ref: Ref, name: str, value: Any, /) -> None:
        await self._conn.unary("FfiSetAttr", msgs.ffi_set_attr_request(self.id, ref, name, value))

    def call_stream(self, module: str, function: str, /, *args: Any, **kwargs: Any) -> AsyncItemStream[Any]:
        req = msgs.ffi_call_request(self.id, module, function, args, kwargs)
        return self._conn.stream("FfiStream", req, self._value)

    async def _ffi_next(self, stream: StreamRef, n: int) -> tuple[list[Any], bool]:
        return self._batch(await self._conn.unary("FfiNext", msgs.ffi_next_request(self.id, stream, n)))

    async def next(self, stream: StreamRef, n: int = 1, /) -> list[Any]:
        return (await self._ffi_next(stream, n))[0]

    async def release_ref(self, ref: Ref | StreamRef, /) -> None:
        await self._conn.unary("FfiReleaseRef", msgs.release_ref_request(self.id, ref))

    async def register_variable(
        self, name: str, type: str, initial: Any, /, *, description: str = "", **constraints: Any
    ) -> Variable:
        req = msgs.register_variable_request(self.id, name, type, initial, description, constraints)
        return self._variable(await self._conn.unary("RegisterVariable", req))

    async def get_variable_info(self, name: str, /) -> Variable:
        req = svc.VariableRequest(session_id=self.id, variable=name)
        return self._variable(await self._conn.unary("GetVariable", req))

    async def get_variable(self, name: str, /) -> Any:
        return (await self.get_variable_info(name)).value

    async def set_variable(self, name: str, value: Any, /) -> Variable:
        req = msgs.set_variable_request(self.id, name, value)
        return self._variable(await self._conn.unary("SetVariable", req))

    async def list_variables(self) -> dict[str, Any]:
        return self._values(await self._conn.unary("ListVariables", svc.SessionRequest(session_id=self.id)))

    def watch_variables(self, *names: str, include_initial: bool = False) -> AsyncItemStream[VariableUpdate]:
        req = svc.WatchVariablesRequest(session_id=self.id, variables=names, include_initial=include_initial)
        return self._conn.stream("WatchVariables", req, self._update)

    async def info(self) -> dict[str, Any]:
        return msgs.message_dict(await self._conn.unary("GetSession", svc.SessionRequest(session_id=self.id)))

    async def release(self) -> None:
        if self._mark_released():
            await self._conn.unary("ReleaseSession", svc.SessionRequest(session_id=self.id))


class _OpeningSession:
    """What ``AsyncClient.session()`` returns: ``await`` it for the session,
    or use it in ``async with`` to release the session on the way out."""

    def __init__(self, conn: _Connection, request: svc.CreateSessionRequest) -> None:
        self._conn = conn
        self._request = request
        self._session: AsyncSession | None = None

    async def _open(self) -> AsyncSession:
        return AsyncSession(self._conn, await self._conn.unary("CreateSession", self._request))

    def __await__(self) -> Generator[Any, None, AsyncSession]:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncSession:
        self._session = await self._open()
        return self._session

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.release()


class AsyncClient:
    """A connection to ``snakepit serve`` for asyncio (see
    :class:`snakepit_client.Client` for the arguments); ``async with`` it, or
    ``await close()``."""

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
        self._opening: asyncio.Task[AsyncSession] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<AsyncClient {self.target}{' closed' if self._closed else ''}>"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Release the client's own session (if FFI calls opened one) and close the channel."""
        if self._closed:
            return
        self._closed = True
        opening, self._opening = self._opening, None
        try:
            session = None
            if opening is not None:
                try:
                    session = await opening
                except SnakepitError:
                    pass  # it never opened: nothing to release
            if session is not None:
                try:
                    await session.release()
                except SnakepitError as e:
                    if e.kind not in msgs.GONE:
                        raise
        finally:
            await self._conn.channel.close()

    async def execute(
        self,
        tool: str,
        /,
        *,
        pool: str | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
        **kwargs: Any,
    ) -> Any:
        req = msgs.execute_request(tool, kwargs, pool=pool, idempotent=idempotent)
        return msgs.value(await self._conn.unary("Execute", req, timeout))

    def stream(self, tool: str, /, *, pool: str | None = None, **kwargs: Any) -> AsyncItemStream[Any]:
        req = msgs.execute_request(tool, kwargs, pool=pool)
        return self._conn.stream("ExecuteStream", req, msgs.value)

    def session(self, *, pool: str | None = None, affinity: str = "hint") -> _OpeningSession:
        req = svc.CreateSessionRequest(pool=pool or "", affinity=msgs.affinity(affinity))
        return _OpeningSession(self._conn, req)

    async def status(self, pool: str | None = None) -> dict[str, dict[str, Any]]:
        return msgs.pools_dict(await self._conn.unary("PoolStatus", svc.PoolStatusRequest(pool=pool or "")))

    async def _session(self) -> AsyncSession:
        if self._closed:
            raise ValueError("the client is closed")
        if self._opening is None:
            # One task opens it; concurrent first calls all wait for that one.
            self._opening = asyncio.ensure_future(self.session()._open())
        try:
            return await asyncio.shield(self._opening)
        except SnakepitError:
            self._opening = None
            raise

    async def call(self, module: str, function: str, /, *args: Any, **kwargs: Any) -> Any:
        return await (await self._session()).call(module, function, *args, **kwargs)

    async def get(self, module: str, attr: str, /) -> Any:
        return await (await self._session()).get(module, attr)

    async def call_class(self, module: str, cls: str, /, *args: Any, **kwargs: Any) -> Any:
        return await (await self._session()).call_class(module, cls, *args, **kwargs)

    async def method(self, ref: Ref, name: str, /, *args: Any, **kwargs: Any) -> Any:
        return await (await self._session()).method(ref, name, *args, **kwargs)

    async def attr(self, ref: Ref, name: str, /) -> Any:
        return await (await self._session()).attr(ref, name)

    async def set_attr(self, ref: Ref, name: str, value: Any, /) -> None:
        await (await self._session()).set_attr(ref, name, value)

    def call_stream(self, module: str, function: str, /, *args: Any, **kwargs: Any) -> AsyncItemStream[Any]:
        # Encoded now (a value that cannot be sent fails here); sent at the first read.
        req = msgs.ffi_call_request("", module, function, args, kwargs)
        opened: list[AsyncSession] = []

        async def start() -> Any:
            opened.append(await self._session())
            req.session_id = opened[0].id
            return self._conn.open_stream("FfiStream", req)

        return AsyncItemStream(None, lambda item: opened[0]._value(item), start=start)

    async def next(self, stream: StreamRef, n: int = 1, /) -> list[Any]:
        return await (await self._session()).next(stream, n)

    async def release_ref(self, ref: Ref | StreamRef, /) -> None:
        await (await self._session()).release_ref(ref)
