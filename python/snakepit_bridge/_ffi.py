"""The universal FFI: the worker's built-in ``snakepit.ffi.*`` tools.

Wire contract: ``docs/ffi-protocol.md``. The worker (``_worker.py``) runs the
operations as plans of their own (``_binding.FfiPlan``): it decodes the
arguments, calls the operation from :data:`OPS`, and encodes the result with
:func:`encode_graceful`, all while ``_context.current_request`` is the request,
whose session the refs made and used belong to. This module holds what does
not touch the socket:

* :class:`RefStore`: the objects behind ``ObjectRef``/``StreamRef`` values,
  per session, with LRU eviction (``--max-refs``) and expiry (``--ref-ttl-ms``);
* graceful encoding: a leaf without a wire form becomes a ref, and a cyclic or
  too deeply nested container a ref where it repeats;
* the decoders of ``ref``, ``stream_ref`` and ``callback`` values, installed
  into the codec by :func:`install` (a ref anywhere in the arguments of any
  tool is the stored object; a callback is a :class:`CallbackProxy`);
* the operations, the cache of resolved ``module.attr`` targets and helpers.
"""

from __future__ import annotations

import builtins
import collections
import fnmatch
import importlib
import importlib.util
import itertools
import os
import sys
import threading
import time
import types
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from . import _codec
from ._codec import LIST_COST, MAP_COST, WIRE_DEPTH, NestingError, encode_into
from ._context import current_request
from ._proto import snakepit_pb2 as pb
from .errors import (
    HelperNotFoundError,
    HostError,
    HostToolError,
    RefNotFoundError,
    SessionMismatchError,
)

__all__ = [
    "CALLBACK_PREFIX",
    "OPS",
    "CallbackProxy",
    "FfiArgumentError",
    "FfiRuntime",
    "HostLink",
    "RefStore",
    "as_generator",
    "encode_graceful",
    "install",
    "wire_error",
]

CALLBACK_PREFIX = "snakepit.callback."
"""Host tool name prefix of a callback: ``snakepit.callback.{id}``."""

# How many removed ref ids are remembered with why they went (for the message
# of a RefNotFoundError).
_GONE_REMEMBERED = 4096

_EVICTED = "evicted by max_refs"


class FfiArgumentError(TypeError):
    """The arguments of an FFI operation itself are wrong (a BAD_ARGUMENTS error)."""

    def __init__(self, message: str, parameter: str = "", details: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.details = details or {}


def wire_error(e: BaseException) -> tuple[pb.ErrorKind, dict[str, str]] | None:
    """(error kind, details) of the Error frame for the FFI's typed exceptions, else None."""
    if not isinstance(e, _TYPED):
        return None
    if isinstance(e, RefNotFoundError):
        details = {"what": "ref", "ref_id": e.ref_id, "session_id": e.session_id}
        if e.reason:
            details["reason"] = e.reason
        return pb.ERROR_KIND_NOT_FOUND, details
    if isinstance(e, SessionMismatchError):
        return pb.ERROR_KIND_BAD_ARGUMENTS, {
            "what": "session_mismatch",
            "ref_id": e.ref_id,
            "ref_session": e.ref_session,
            "call_session": e.call_session,
        }
    assert isinstance(e, HelperNotFoundError)
    return pb.ERROR_KIND_NOT_FOUND, {"what": "helper", "helper": e.helper}


_TYPED = (RefNotFoundError, SessionMismatchError, HelperNotFoundError)


# ---------------------------------------------------------------- ref store


class _Entry:
    __slots__ = ("id", "obj", "session", "used", "why")

    def __init__(self, rid: str, obj: Any, session: str, used: float) -> None:
        self.id = rid
        self.obj = obj
        self.session = session
        # time.monotonic() of the last use (0.0 when refs never expire).
        self.used = used
        # Why it was dropped, once it is.
        self.why = ""


class _Session:
    __slots__ = ("lru", "by_obj")

    def __init__(self) -> None:
        # Least recently used first.
        self.lru: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        # id(obj) -> its entry: the same live object keeps its ref id. The
        # entry holds the object, so its id() cannot be reused meanwhile.
        self.by_obj: dict[int, _Entry] = {}


class RefStore:
    """The objects behind the refs of one worker, per session.

    Thread-safe (one lock, held for dictionary work only: objects dropped by
    an operation are let go after the lock is released, so a finalizer that
    uses the store cannot deadlock). Ref ids are ``"{worker_id}/{n}"``, ``n``
    counting from 1 per process.
    """

    def __init__(self, worker_id: str = "", max_refs: int = 10_000, ttl: float = 0.0) -> None:
        if max_refs < 1:
            raise ValueError("max_refs must be at least 1")
        self._prefix = f"{worker_id}/"
        self.max_refs = max_refs
        self.ttl = ttl
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._entries: dict[str, _Entry] = {}
        self._sessions: dict[str, _Session] = {}
        self._gone: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, obj: Any, session: str) -> str:
        """The ref id of ``obj`` in ``session``: its existing one if it is
        stored there already (which counts as a use), else a new one."""
        dropped: list[_Entry] = []  # let go after the lock is released
        with self._lock:
            rid = self._put_locked(obj, session, dropped)
            live = len(self._entries)
        if dropped:
            _report_dropped(dropped, session, live)
        return rid

    def _put_locked(self, obj: Any, session: str, dropped: list[_Entry]) -> str:
        """put() with the lock held; what it drops joins ``dropped``."""
        ttl = self.ttl
        now = time.monotonic() if ttl else 0.0
        s = self._sessions.get(session)
        if s is None:
            s = self._sessions[session] = _Session()
        else:
            e = s.by_obj.get(id(obj))
            if e is not None and e.obj is obj:
                if not ttl or now - e.used <= ttl:
                    e.used = now
                    s.lru.move_to_end(e.id)
                    return e.id
                self._drop(e, s, "expired", dropped)
        if ttl and now >= self._next_sweep:
            self._sweep(now, dropped)
            self._next_sweep = now + ttl / 2
        lru = s.lru
        while len(lru) >= self.max_refs:
            _, oldest = lru.popitem(last=False)
            self._forget(oldest, s, _EVICTED, dropped)
        # (Re-)registered: dropping its last entry above unregisters it.
        self._sessions[session] = s
        rid = self._prefix + str(next(self._counter))
        e = _Entry(rid, obj, session, now)
        lru[rid] = e
        s.by_obj[id(obj)] = e
        self._entries[rid] = e
        return rid

    def get(self, rid: str, session: str) -> Any:
        """The object of ref ``rid`` for a call of ``session`` (a use: it
        refreshes the ref). Raises RefNotFoundError, SessionMismatchError."""
        dropped: list[_Entry] = []
        with self._lock:
            e = self._entries.get(rid)
            if e is None:
                raise RefNotFoundError(rid, session, self._gone.get(rid, ""))
            if e.session != session:
                raise SessionMismatchError(rid, e.session, session)
            s = self._sessions[session]
            ttl = self.ttl
            if ttl:
                now = time.monotonic()
                if now - e.used > ttl:
                    self._drop(e, s, "expired", dropped)
                else:
                    e.used = now
            if not dropped:
                s.lru.move_to_end(rid)
                return e.obj
            live = len(self._entries)
        _report_dropped(dropped, session, live)
        raise RefNotFoundError(rid, session, "expired")

    def release(self, session: str, rid: str) -> bool:
        """Drops one ref of ``session``; False if there was none (not an error)."""
        dropped: list[_Entry] = []
        with self._lock:
            e = self._entries.get(rid)
            if e is None or e.session != session:
                return False
            self._drop(e, self._sessions[session], "released", dropped)
        return True

    def release_session(self, session: str) -> int:
        """Drops every ref of ``session``; returns how many there were."""
        with self._lock:
            s = self._sessions.pop(session, None)
            if s is None:
                return 0
            entries = self._entries
            gone = self._gone
            for rid in s.lru:
                del entries[rid]
                gone[rid] = "session released"
            while len(gone) > _GONE_REMEMBERED:
                gone.popitem(last=False)
        return len(s.lru)

    def session_ids(self, session: str) -> list[str]:
        """The ref ids of ``session``, least recently used first."""
        with self._lock:
            s = self._sessions.get(session)
            return list(s.lru) if s is not None else []

    # Called with the lock held.

    def _drop(self, e: _Entry, s: _Session, why: str, dropped: list[_Entry]) -> None:
        del s.lru[e.id]
        self._forget(e, s, why, dropped)

    def _forget(self, e: _Entry, s: _Session, why: str, dropped: list[_Entry]) -> None:
        """Removes an entry already taken out of its session's LRU order."""
        del self._entries[e.id]
        if s.by_obj.get(id(e.obj)) is e:
            del s.by_obj[id(e.obj)]
        if not s.lru:
            self._sessions.pop(e.session, None)
        e.why = why
        gone = self._gone
        gone[e.id] = why
        if len(gone) > _GONE_REMEMBERED:
            gone.popitem(last=False)
        dropped.append(e)

    def _sweep(self, now: float, dropped: list[_Entry]) -> None:
        """Drops the expired refs of every session (LRU order is last-use order)."""
        ttl = self.ttl
        for s in list(self._sessions.values()):
            lru = s.lru
            while lru:
                e = next(iter(lru.values()))
                if now - e.used <= ttl:
                    break
                self._drop(e, s, "expired", dropped)


def _report_dropped(dropped: list[_Entry], session: str, live: int) -> None:
    """Tells the host that refs were evicted (``max_refs``) or expired (TTL):
    the event ``snakepit.ffi.refs.dropped``, counted in Prometheus as a
    Python event, with how many of each and how many refs the worker holds."""
    from . import telemetry  # late: telemetry imports the codec this module patches

    evicted = sum(1 for e in dropped if e.why == _EVICTED)
    telemetry.emit(
        "snakepit.ffi.refs.dropped",
        {"evicted": evicted, "expired": len(dropped) - evicted, "live": live},
        {"session_id": session},  # the session whose call dropped them (a sweep covers all)
    )


# ------------------------------------------------------------ the runtime


class HostLink(Protocol):
    """What the FFI needs of the worker: a call to a host tool on behalf of
    the running request (a host callback's), answered or raised as the host
    says (``_host_calls.HostCalls`` is the worker's)."""

    def host_call(
        self,
        request: Any,
        session_id: str,
        tool: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        *,
        timeout: float | None,
        graceful: bool = False,
    ) -> Any: ...


class FfiRuntime:
    """What the FFI of one worker holds: the ref store, the resolved targets,
    the helpers, and the worker's link to the host (for the host calls of callbacks)."""

    def __init__(
        self,
        *,
        worker_id: str = "",
        max_refs: int = 10_000,
        ref_ttl_ms: int = 0,
        helper_dirs: Sequence[str] = (),
        helper_allow: Sequence[str] = (),
        host: HostLink | None = None,
    ) -> None:
        self.store = RefStore(worker_id, max_refs, ref_ttl_ms / 1000.0)
        # module name -> {dotted attribute name -> what it resolved to}.
        self._resolved: dict[str, dict[str, Any]] = {}
        self.helpers = _Helpers(helper_dirs, helper_allow)
        # The worker's way to the host, for the host calls of callbacks.
        self.host = host

    def resolve(self, module: Any, name: Any) -> Any:
        """``module.name`` (dotted), importing the module on first use. Cached:
        later changes to the module's attributes are not seen."""
        try:
            return self._resolved[module][name]
        except (KeyError, TypeError):  # not cached yet, or not even names
            pass
        target = _lookup(_import(module), _check_name(name, "function"))
        self._resolved.setdefault(module, {})[name] = target
        return target


def _check_name(name: Any, parameter: str) -> str:
    if type(name) is not str:
        raise FfiArgumentError(f"{parameter} must be a str, got {type(name).__name__}", parameter)
    if not name or name.startswith(".") or name.endswith(".") or ".." in name:
        raise FfiArgumentError(f"{parameter} must be a (dotted) name, got {name!r}", parameter)
    return name


# Modules imported by the FFI, by name (only once import_module returned, so
# never one still initializing in another thread).
_modules: dict[str, types.ModuleType] = {}


def _import(module: Any) -> types.ModuleType:
    m = _modules.get(module) if type(module) is str else None
    if m is None:
        m = importlib.import_module(_check_name(module, "module"))
        _modules[module] = m
    return m


def _lookup(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------- helpers


class _Helpers:
    """``file.function`` helpers from ``--helper-dir`` directories, each file
    loaded once under a private module name, allowlisted by ``--helper-allow``."""

    def __init__(self, dirs: Sequence[str], allow: Sequence[str]) -> None:
        self.dirs = tuple(os.path.abspath(d) for d in dirs)
        self.allow = tuple(allow)
        self._lock = threading.Lock()
        self._modules: dict[str, types.ModuleType] = {}
        self._functions: dict[str, Callable[..., Any]] = {}

    def get(self, name: Any) -> Callable[..., Any]:
        f = self._functions.get(name) if type(name) is str else None
        if f is None:
            f = self._load(name)
        return f

    def _load(self, name: Any) -> Callable[..., Any]:
        if type(name) is not str:
            raise FfiArgumentError(
                f"helper name must be a str, got {type(name).__name__}",
                "name",
                {"what": "helper", "helper": repr(name)},
            )
        if "/" in name or "\\" in name or ".." in name or "\0" in name:
            raise HelperNotFoundError(f"helper {name!r} not found: names may not contain '/', '\\' or '..'", name)
        file, _, function = name.partition(".")
        if not file or not function or not all(p.isidentifier() for p in function.split(".")):
            raise FfiArgumentError(
                f"helper name must be file.function, got {name!r}", "name", {"what": "helper", "helper": name}
            )
        if self.allow and not any(fnmatch.fnmatchcase(name, p) for p in self.allow):
            raise HelperNotFoundError(f"helper {name!r} is not allowed by --helper-allow", name)
        if not self.dirs:
            raise HelperNotFoundError(f"helper {name!r} not found: no helper directories (--helper-dir)", name)
        module = self._module(name, file)
        try:
            f = _lookup(module, function)
        except AttributeError:
            raise HelperNotFoundError(
                f"helper {name!r} not found: {module.__file__} has no {function!r}", name
            ) from None
        if not callable(f):
            raise HelperNotFoundError(f"helper {name!r} not found: {function!r} is a {type(f).__name__}", name)
        found: Callable[..., Any] = f
        self._functions[name] = found
        return found

    def _module(self, name: str, file: str) -> types.ModuleType:
        with self._lock:
            m = self._modules.get(file)
            if m is not None:
                return m
            for i, d in enumerate(self.dirs):
                path = os.path.join(d, file + ".py")
                if os.path.isfile(path):
                    break
            else:
                raise HelperNotFoundError(f"helper {name!r} not found: no {file}.py in the helper directories", name)
            # A name of our own, so that a helper file never clashes with (or
            # shadows) an importable module; registered while it runs, as
            # dataclasses and pickling look modules up there.
            mod_name = f"_snakepit_helper_{i}_{file}"
            spec = importlib.util.spec_from_file_location(mod_name, path)
            if spec is None or spec.loader is None:
                raise HelperNotFoundError(f"helper {name!r}: {path} cannot be loaded", name)
            m = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = m
            try:
                spec.loader.exec_module(m)
            except BaseException:
                sys.modules.pop(mod_name, None)
                raise
            self._modules[file] = m
            return m


# ----------------------------------------------------- graceful encoding

_runtime: FfiRuntime | None = None
_type_names: dict[type, str] = {}


def _type_name(t: type) -> str:
    name = _type_names.get(t)
    if name is None:
        mod = public_module(t)
        qual = getattr(t, "__qualname__", t.__name__)
        name = _codec.safe_text(qual if mod in ("builtins", "", None) else f"{mod}.{qual}")
        _type_names[t] = name
    return name


def public_module(t: type) -> str:
    """The module a user names `t` by: its own, or the nearest enclosing
    package that exposes it under the same name when its own is private
    (``pathlib.PosixPath``, defined in ``pathlib._local`` since Python 3.13,
    is ``pathlib.PosixPath`` on every version)."""
    mod = getattr(t, "__module__", "") or ""
    parts = mod.split(".")
    if not any(p.startswith("_") for p in parts[1:]):
        return mod
    qual = getattr(t, "__qualname__", "")
    for n in range(1, len(parts)):
        candidate = ".".join(parts[:n])
        if any(p.startswith("_") for p in parts[1:n]):
            break
        module = sys.modules.get(candidate)
        if module is not None and "." not in qual and getattr(module, qual, None) is t:
            return candidate
    return mod


_stream_types: dict[type, bool] = {}


def _is_stream(t: type) -> bool:
    """Whether objects of type `t` cross as a StreamRef: iterators, except
    those that are context managers too (files, scandir iterators): those are
    resources to use with ``enter``/``exit`` and methods, so an ObjectRef
    (``snakepit.ffi.next`` takes either)."""
    stream = _stream_types.get(t)
    if stream is None:
        stream = issubclass(t, Iterator) and not (hasattr(t, "__enter__") and hasattr(t, "__exit__"))
        _stream_types[t] = stream
    return stream


def _scope_session() -> str:
    """The session of the request this thread serves ("" outside one)."""
    scope = current_request.get()
    return "" if scope is None else getattr(scope, "session_id", "")


def _ref_hook(obj: Any, out: pb.Value) -> None:
    """The codec's ``on_unserializable`` hook: store ``obj``, fill ``out`` with its ref."""
    rt = _runtime
    if rt is None:
        raise _codec.EncodingError(f"cannot encode object of type {_type_name(type(obj))}: no ref store")
    session = _scope_session()
    r: Any = out.stream_ref if _is_stream(type(obj)) else out.ref
    r.id = rt.store.put(obj, session)
    r.session_id = session
    r.type_name = _type_name(type(obj))


def encode_graceful(obj: Any, out: pb.Value, root: str = "value") -> None:
    """Fill ``out`` with ``obj``, leaves without a wire form as refs (in the
    session of the current request). Cyclic or too deeply nested containers
    fail the codec's fast path on its depth limit; they are then encoded again
    by a slower walk that makes a ref where a container repeats."""
    try:
        encode_into(obj, out, root=root, on_unserializable=_ref_hook)
    except NestingError:
        out.Clear()
        _encode_careful(obj, out, 0, set())


_LIST_KINDS: dict[type, str] = {list: "list", tuple: "tuple", set: "set", frozenset: "frozenset", dict: "map"}
_SCALARS = (str, bytes, bytearray, memoryview, int, float, complex)


def container_kind(obj: Any) -> str | None:
    """How the codec encodes ``obj`` if it is a container (same order as its fallbacks)."""
    kind = _LIST_KINDS.get(type(obj))
    if kind is not None:
        return kind
    if isinstance(obj, _SCALARS):
        return None
    if isinstance(obj, Mapping):
        return "map"
    for t in (list, tuple, frozenset, set):
        if isinstance(obj, t):
            return _LIST_KINDS[t]
    return None


def _encode_careful(obj: Any, out: pb.Value, depth: int, path: set[int]) -> None:
    """Graceful encoding that tracks the containers being encoded (`path`):
    one met again inside itself, or one nested deeper than a frame can carry
    (`depth` counts protobuf levels, see _codec.WIRE_DEPTH), becomes a ref."""
    kind = container_kind(obj)
    if kind is None:
        _codec.enc_value(obj, out, depth, _ref_hook)
        return
    oid = id(obj)
    cost = MAP_COST if kind == "map" else LIST_COST
    if oid in path or depth + cost > WIRE_DEPTH:
        _ref_hook(obj, out)
        return
    path.add(oid)
    depth += cost
    try:
        if kind == "map":
            m = out.map
            m.SetInParent()
            add_entry = m.entries.add
            for k, v in obj.items():
                entry = add_entry()
                _encode_careful(k, entry.key, depth, path)
                _encode_careful(v, entry.value, depth, path)
        else:
            lst = getattr(out, kind)
            lst.SetInParent()
            add = lst.items.add
            for item in obj:
                _encode_careful(item, add(), depth, path)
    finally:
        path.discard(oid)


# -------------------------------------------------------------- callbacks


class CallbackProxy:
    """A host function handed to Python (a ``Callback`` value): calling it
    makes the host call ``snakepit.callback.{id}`` for the running request and
    returns the host's answer. Encoding it again gives back the same value."""

    __slots__ = ("id", "arity", "_tool")

    def __init__(self, callback_id: str, arity: int) -> None:
        self.id = callback_id
        self.arity = arity
        self._tool = CALLBACK_PREFIX + callback_id

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"host callback {self.id!r} takes no keyword arguments, got {', '.join(map(repr, kwargs))}")
        if len(args) != self.arity:
            s = "" if self.arity == 1 else "s"
            raise TypeError(
                f"host callback {self.id!r} takes {self.arity} positional argument{s} but {len(args)} were given"
            )
        rt = _runtime
        if rt is None or rt.host is None:
            raise HostToolError(
                f"cannot call host callback {self.id!r}: not running in a snakepit worker",
                kind="unavailable",
                tool=self._tool,
            )
        scope = current_request.get()
        session = "" if scope is None else getattr(scope, "session_id", "")
        return rt.host.host_call(scope, session, self._tool, args, {}, timeout=None, graceful=True)

    def __eq__(self, other: object) -> bool:
        return type(other) is CallbackProxy and other.id == self.id and other.arity == self.arity

    def __hash__(self) -> int:
        return hash((CallbackProxy, self.id, self.arity))

    def __repr__(self) -> str:
        return f"<snakepit host callback {self.id!r} arity={self.arity}>"


def _enc_callback(obj: Any, out: pb.Value, depth: int, hook: Any) -> None:
    cb = out.callback
    cb.id = obj.id
    cb.arity = obj.arity


def _dec_callback(v: pb.Value, depth: int) -> Any:
    cb = v.callback
    return CallbackProxy(cb.id, cb.arity)


def _dec_ref(v: pb.Value, depth: int) -> Any:
    return _stored(v.ref.id)


def _dec_stream_ref(v: pb.Value, depth: int) -> Any:
    return _stored(v.stream_ref.id)


def _stored(rid: str) -> Any:
    rt = _runtime
    session = _scope_session()
    if rt is None:
        raise RefNotFoundError(rid, session, "this process holds no refs")
    return rt.store.get(rid, session)


def install(runtime: FfiRuntime) -> None:
    """Make ``runtime`` the process's FFI: ref, stream_ref and callback values
    decode through it (for every tool), callback proxies encode back."""
    global _runtime
    _runtime = runtime
    _codec.set_decoder("ref", _dec_ref)
    _codec.set_decoder("stream_ref", _dec_stream_ref)
    _codec.set_decoder("callback", _dec_callback)
    _codec.register_encoder(CallbackProxy, _enc_callback)


# ------------------------------------------------------------- operations


def as_generator(obj: Any) -> Any:
    """A (sync or async) generator over the items of iterable ``obj``, for the
    worker's stream loop; closing it closes a generator behind it."""
    if isinstance(obj, (types.GeneratorType, types.AsyncGeneratorType)):
        return obj
    t = type(obj)
    if hasattr(t, "__aiter__") and not hasattr(t, "__iter__"):
        return _async_items(obj)
    return _items(iter(obj))


def _items(it: Iterator[Any]) -> Any:
    yield from it


async def _async_items(ait: AsyncIterator[Any]) -> Any:
    async for item in ait:
        yield item


def _arity(op: str, args: Sequence[Any], low: int, high: int, usage: str) -> None:
    n = len(args)
    if n < low or n > high:
        raise FfiArgumentError(f"snakepit.ffi.{op} takes {usage}, got {n} argument{'' if n == 1 else 's'}")


def _op_call(rt: FfiRuntime, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if len(args) < 2:
        _arity("call", args, 2, 1 << 30, "module, function, *args")
    return rt.resolve(args[0], args[1])(*args[2:], **kwargs)


def _op_get(rt: FfiRuntime, args: list[Any], kwargs: dict[str, Any]) -> Any:
    _arity("get", args, 2, 2, "module, attr")
    # Not cached: a module attribute may change (only the import is).
    return _lookup(_import(args[0]), _check_name(args[1], "attr"))


def _op_call_class(rt: FfiRuntime, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if len(args) < 2:
        _arity("call_class", args, 2, 1 << 30, "module, class, *args")
    cls = rt.resolve(args[0], args[1])
    if not isinstance(cls, type):
        raise TypeError(f"{args[0]}.{args[1]} is not a class but a {type(cls).__name__}")
    return cls(*args[2:], **kwargs)


def _op_method(rt: FfiRuntime, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if len(args) < 2:
        _arity("method", args, 2, 1 << 30, "ref, name, *args")
    name = args[1]
    if type(name) is not str:
        _check_name(name, "name")
    return getattr(args[0], name)(*args[2:], **kwargs)


def _op_attr(rt: FfiRuntime, args: list[Any], kwargs: dict[str, Any]) -> Any:
    _arity("attr", args, 2, 2, "ref, name")
    name = args[1]
    if type(name) is not str:
        _check_name(name, "name")
    return getattr(args[0], name)


def _op_set_attr(rt: FfiRuntime, args: list[Any], kwargs: dict[str, Any]) -> Any:
    _arity("set_attr", args, 3, 3, "ref, name, value")
    name = args[1]
    if type(name) is not str:
        _check_name(name, "name")
    setattr(args[0], name, args[2])
    return None


def _op_helper(rt: FfiRuntime, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if not args:
        _arity("helper", args, 1, 1 << 30, "name, *args")
    return rt.helpers.get(args[0])(*args[1:], **kwargs)


def _op_stream(rt: FfiRuntime, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if len(args) < 2:
        _arity("stream", args, 2, 1 << 30, "module, function, *args")
    return rt.resolve(args[0], args[1])(*args[2:], **kwargs)


def _op_next(rt: FfiRuntime, args: list[Any], kwargs: dict[str, Any]) -> Any:
    _arity("next", args, 2, 2, "stream_ref, n")
    it, n = args
    if type(n) is not int or n < 0:
        raise FfiArgumentError(f"n must be an int >= 0, got {n!r}", "n")
    if not isinstance(it, Iterator):
        raise FfiArgumentError(
            f"snakepit.ffi.next needs a stream ref (an iterator), got {_type_name(type(it))}", "stream_ref"
        )
    return list(itertools.islice(it, n))


def _op_len(rt: FfiRuntime, args: list[Any], kwargs: dict[str, Any]) -> Any:
    _arity("len", args, 1, 1, "ref")
    return len(args[0])


def _op_repr(rt: FfiRuntime, args: list[Any], kwargs: dict[str, Any]) -> Any:
    _arity("repr", args, 1, 1, "ref")
    return repr(args[0])


def _op_enter(rt: FfiRuntime, args: list[Any], kwargs: dict[str, Any]) -> Any:
    _arity("enter", args, 1, 1, "ref")
    obj = args[0]
    enter = getattr(type(obj), "__enter__", None)
    if enter is None or getattr(type(obj), "__exit__", None) is None:
        raise TypeError(f"{_type_name(type(obj))!r} object does not support the context manager protocol")
    return enter(obj)


def _op_exit(rt: FfiRuntime, args: list[Any], kwargs: dict[str, Any]) -> Any:
    _arity("exit", args, 1, 4, "ref, python_type, message, traceback")
    obj = args[0]
    python_type, message, tb = (list(args[1:]) + [None, None, None])[:3]
    for value, parameter in ((python_type, "python_type"), (message, "message"), (tb, "traceback")):
        if value is not None and type(value) is not str:
            raise FfiArgumentError(f"{parameter} must be a str or None, got {type(value).__name__}", parameter)
    exit_ = getattr(type(obj), "__exit__", None)
    if exit_ is None:
        raise TypeError(f"{_type_name(type(obj))!r} object does not support the context manager protocol")
    if python_type is None:
        return bool(exit_(obj, None, None, None))
    exc = _rebuild_exception(python_type, message, tb)
    return bool(exit_(obj, type(exc), exc, None))


def _rebuild_exception(python_type: str, message: str | None, tb: str | None) -> BaseException:
    """The host's error as an exception: the builtin class of that name when
    there is one (and it takes a message), else HostError."""
    cls = getattr(builtins, python_type, None) if python_type else None
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            exc = cls(message) if message is not None else cls()
        except Exception:  # a class whose constructor wants more (UnicodeDecodeError, ...)
            pass
        else:
            if tb:
                exc.add_note(tb)
            return exc
    return HostError(message or "", python_type=python_type, traceback=tb or "")


class _Op:
    """One FFI operation: its function and what the worker must know of it."""

    __slots__ = ("func", "kwargs_ok", "streams")

    def __init__(
        self,
        func: Callable[[FfiRuntime, list[Any], dict[str, Any]], Any],
        *,
        kwargs_ok: bool = False,
        streams: bool = False,
    ) -> None:
        self.func = func
        self.kwargs_ok = kwargs_ok
        self.streams = streams


OPS: dict[str, _Op] = {
    "snakepit.ffi.call": _Op(_op_call, kwargs_ok=True),
    "snakepit.ffi.get": _Op(_op_get),
    "snakepit.ffi.call_class": _Op(_op_call_class, kwargs_ok=True),
    "snakepit.ffi.method": _Op(_op_method, kwargs_ok=True),
    "snakepit.ffi.attr": _Op(_op_attr),
    "snakepit.ffi.set_attr": _Op(_op_set_attr),
    "snakepit.ffi.helper": _Op(_op_helper, kwargs_ok=True),
    "snakepit.ffi.stream": _Op(_op_stream, kwargs_ok=True, streams=True),
    "snakepit.ffi.next": _Op(_op_next),
    "snakepit.ffi.len": _Op(_op_len),
    "snakepit.ffi.repr": _Op(_op_repr),
    "snakepit.ffi.enter": _Op(_op_enter),
    "snakepit.ffi.exit": _Op(_op_exit),
}
"""The operations by tool name."""

FFI_PREFIX = "snakepit.ffi."
