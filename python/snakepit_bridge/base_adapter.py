"""``BaseAdapter`` and the ``@tool`` decorator: how a Python class exposes tools."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, overload

from ._context import current_request
from .batching import Batch
from .session_context import SessionContext

__all__ = ["BaseAdapter", "RequestScopedContext", "SessionIdOfContext", "ToolMetadata", "tool"]

F = TypeVar("F", bound=Callable[..., Any])

# Attribute under which @tool stores its metadata on the function.
TOOL_ATTR = "_tool_metadata"


@dataclass(frozen=True, slots=True)
class ToolMetadata:
    """What ``@tool`` records about a method."""

    name: str
    description: str
    supports_streaming: bool = False
    required_variables: tuple[str, ...] = field(default_factory=tuple)
    is_async: bool = False
    is_generator: bool = False
    function: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    #: How the host gathers the tool's calls, for a batched tool.
    batch: Batch | None = None


def _check_batched(func: Callable[..., Any], name: str, is_gen: bool, supports_streaming: bool) -> None:
    """Raises TypeError unless `func` can be a batched tool: a method taking
    one parameter besides self (the list of calls), that does not stream."""
    if is_gen or supports_streaming:
        raise TypeError(
            f"tool {name!r}: a batched tool cannot stream (it returns one result per call); "
            "drop batch= or make it a plain (or async) method"
        )
    params = list(inspect.signature(func).parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if len(params) != 2 or any(p.kind not in positional for p in params):
        shown = ", ".join(str(p) for p in params)
        raise TypeError(
            f"tool {name!r}: a batched tool takes exactly one parameter besides self, the list of its "
            f"calls' keyword arguments (def {func.__name__}(self, items)); it takes ({shown})"
        )


def _make_metadata(
    func: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    supports_streaming: bool,
    required_variables: Iterable[str] | None,
    batch: Batch | None,
) -> ToolMetadata:
    inner = inspect.unwrap(func)
    is_gen = inspect.isgeneratorfunction(inner) or inspect.isasyncgenfunction(inner)
    is_async = inspect.iscoroutinefunction(inner) or inspect.isasyncgenfunction(inner)
    tool_name = name or func.__name__
    if batch is not None:
        _check_batched(func, tool_name, is_gen, supports_streaming)
    if description is None:
        description = inspect.getdoc(func) or ""
    return ToolMetadata(
        name=tool_name,
        description=description,
        supports_streaming=bool(supports_streaming or is_gen),
        required_variables=tuple(required_variables or ()),
        is_async=is_async,
        is_generator=is_gen,
        function=func,
        batch=batch,
    )


@overload
def tool(func: F, /) -> F: ...


@overload
def tool(
    description_: str | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    supports_streaming: bool = False,
    required_variables: Iterable[str] | None = None,
    batch: Batch | None = None,
) -> Callable[[F], F]: ...


def tool(
    func: Callable[..., Any] | str | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    supports_streaming: bool = False,
    required_variables: Iterable[str] | None = None,
    batch: Batch | None = None,
) -> Any:
    """Mark an adapter method as a tool.

    Usable bare (``@tool``), with the description as its one positional
    argument (``@tool("Add two numbers")``), or with options
    (``@tool(description=..., supports_streaming=True, required_variables=[...])``;
    a positional description combines with the other options, not with
    ``description=``). The description defaults to the method's cleaned
    docstring. Generator methods (sync or async) stream their items when the
    caller asks for a stream.

    ``batch=Batch(...)`` makes it a batched tool (see
    :mod:`snakepit_bridge.batching`): the host gathers its concurrent calls
    and the worker calls it once with all of them. It must take exactly one
    parameter besides self (the list of the calls' keyword arguments) and not
    stream; otherwise TypeError is raised here.
    """
    if isinstance(func, str):
        if description is not None:
            raise TypeError("tool() got the description both positionally and as description=")
        description = func
        func = None
    if batch is not None and not isinstance(batch, Batch):
        raise TypeError(f"tool(batch=...) takes a snakepit_bridge.Batch, got {type(batch).__name__}")

    def decorate(f: F) -> F:
        meta = _make_metadata(
            f,
            name=name,
            description=description,
            supports_streaming=supports_streaming,
            required_variables=required_variables,
            batch=batch,
        )
        setattr(f, TOOL_ATTR, meta)
        return f

    if func is not None:
        return decorate(func)
    return decorate


# Where an instance keeps its own session context (see RequestScopedContext).
OWN_CONTEXT = "_snakepit_session_context"


class RequestScopedContext:
    """The ``session_context`` attribute of adapters.

    An instance serving one request at a time keeps its context like any
    attribute. An instance shared by concurrent requests (a thread-safe
    adapter in the thread profile) must not: while the worker runs a request
    on it, reading and assigning ``self.session_context`` reach that
    request's context, so each request sees its own even when they overlap.
    Outside such a request the instance's own value is used.

    Typed as :class:`SessionContext`: tools run with a context injected, so
    ``self.session_context.call_host_tool(...)`` type-checks as it is. It
    reads ``None`` only before the worker injects one (in ``__init__``, or on
    an instance built by hand). On the class it reads this descriptor.
    """

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> RequestScopedContext: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> SessionContext: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        scope = current_request.get()
        if scope is not None and scope.shared is instance:
            return scope.context
        return instance.__dict__.get(OWN_CONTEXT)

    def __set__(self, instance: Any, value: SessionContext | None) -> None:
        scope = current_request.get()
        if scope is not None and scope.shared is instance:
            scope.context = value
        else:
            instance.__dict__[OWN_CONTEXT] = value

    def __delete__(self, instance: Any) -> None:
        self.__set__(instance, None)


class SessionIdOfContext:
    """The ``session_id`` attribute of adapters: the session of the request being served.

    Read through ``self.session_context`` (so on an instance shared by
    concurrent requests each request sees its own); ``""`` when the request
    belongs to no session or no context is set. It is a non-data descriptor:
    an adapter that assigns ``self.session_id`` itself keeps its own value.
    """

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        ctx = instance.session_context
        sid = getattr(ctx, "session_id", None) if ctx is not None else None
        return sid if isinstance(sid, str) else ""


class BaseAdapter:
    """Base class of snakepit adapters.

    In the process profile the worker creates a new instance for every
    request, injects a :class:`SessionContext`, calls ``initialize()`` if
    defined, runs the tool and then ``cleanup()`` if defined, even when the
    tool raised. An adapter declaring ``__thread_safe__ = True`` (see
    :class:`~snakepit_bridge.base_adapter_threaded.ThreadSafeAdapter`) run in
    the thread profile instead gets one instance shared by all requests;
    ``self.session_context`` is still the context of the request being served.
    """

    #: Whether one instance may serve several requests at once (required by the thread profile).
    __thread_safe__: ClassVar[bool] = False

    #: The context of the request being served (see :class:`RequestScopedContext`).
    session_context = RequestScopedContext()

    #: The session id of the request being served (``""`` for none); see :class:`SessionIdOfContext`.
    session_id: str = SessionIdOfContext()  # type: ignore[assignment]

    def __init__(self) -> None:
        # session_context reads None until a context is set: nothing to do here.
        pass

    def set_session_context(self, session_context: SessionContext | None) -> None:
        """Called by the worker to inject the request's context."""
        self.session_context = session_context

    @classmethod
    def get_tools(cls) -> list[ToolMetadata]:
        """The tools this adapter class exposes, in definition order."""
        seen: dict[str, ToolMetadata] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                func = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
                meta = getattr(func, TOOL_ATTR, None)
                if isinstance(meta, ToolMetadata):
                    seen.pop(meta.name, None)
                    seen[meta.name] = meta
                elif attr in seen and callable(value):
                    # A subclass overrode a tool with a plain method: no longer a tool.
                    seen.pop(attr, None)
        return list(seen.values())

    def execute_tool(self, tool_name: str, arguments: dict[str, Any], context: SessionContext | None = None) -> Any:
        """Run tool ``tool_name`` with keyword ``arguments``.

        The worker calls decorated methods directly; this default exists for
        callers that dispatch by name, and adapters may override it to serve
        tools that are not decorated methods.
        """
        if context is not None:
            self.set_session_context(context)
        for meta in type(self).get_tools():
            if meta.name == tool_name and meta.function is not None:
                return getattr(self, meta.function.__name__)(**arguments)
        available = ", ".join(sorted(m.name for m in type(self).get_tools())) or "none"
        raise KeyError(f"unknown tool {tool_name!r}; available tools: {available}")
