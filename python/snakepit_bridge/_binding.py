"""Tool plans: what the hot path needs about each tool, computed once at start-up.

A ``ToolPlan`` holds a tool's signature, its ``ToolSpec`` for the Hello, and
the checks its arguments pass through (``bind``: decode, then check names,
required parameters and the annotated types, raising ``BadArguments``). An
``FfiPlan`` stands for one ``snakepit.ffi.*`` operation. Also here: loading
the adapter class and the check that the thread profile may run it. The
worker (``_worker.py``) builds the plans; the runner (``_runner.py``) binds
and calls them.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from ._codec import EncodingError, dec, encode_into
from ._proto import snakepit_pb2 as pb
from .base_adapter import BaseAdapter, ToolMetadata
from .base_adapter_threaded import is_thread_safe
from .batching import Batch
from .thread_safety_checker import ThreadSafetyError

__all__: list[str] = []


class BadArguments(Exception):
    """The arguments of a request do not fit the tool (its BAD_ARGUMENTS error)."""

    def __init__(self, message: str, parameter: str = "", details: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.details = details or {}

class _Mismatch(Exception):
    pass


def _instance_of(types: type | tuple[type, ...]) -> Callable[[Any], Any]:
    """A checker passing instances of `types` through unchanged."""

    def check(v: Any) -> Any:
        if isinstance(v, types):
            return v
        raise _Mismatch

    return check


_chk_bool = _instance_of(bool)
_chk_dict = _instance_of(dict)
_chk_bytes = _instance_of((bytes, bytearray))


def _chk_str(v: Any) -> Any:
    if isinstance(v, str):
        return v
    raise _Mismatch


def _chk_int(v: Any) -> Any:
    if type(v) is int or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    raise _Mismatch


def _chk_float(v: Any) -> Any:
    t = type(v)
    if t is float or t is int or (isinstance(v, (int, float)) and not isinstance(v, bool)):
        return v
    raise _Mismatch


def _chk_list(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return v
    np = sys.modules.get("numpy")
    if np is not None and isinstance(v, np.ndarray):
        return v.tolist()
    raise _Mismatch


def _chk_ndarray(v: Any) -> Any:
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(v, np.ndarray):
            return v
        if isinstance(v, (list, tuple)):
            try:
                return np.asarray(v)
            except (ValueError, TypeError):
                raise _Mismatch from None
    raise _Mismatch


_CHECKERS: dict[str, Callable[[Any], Any]] = {
    "str": _chk_str,
    "int": _chk_int,
    "float": _chk_float,
    "bool": _chk_bool,
    "list": _chk_list,
    "dict": _chk_dict,
    "bytes": _chk_bytes,
    "ndarray": _chk_ndarray,
}

_NAMES_BY_TYPE: dict[Any, str] = {
    str: "str",
    int: "int",
    float: "float",
    bool: "bool",
    list: "list",
    dict: "dict",
    bytes: "bytes",
    bytearray: "bytes",
}
_LISTISH = (tuple, set, frozenset)
_STRING_ANNOTATIONS = {
    "str": "str",
    "int": "int",
    "float": "float",
    "bool": "bool",
    "list": "list",
    "dict": "dict",
    "bytes": "bytes",
    "np.ndarray": "ndarray",
    "numpy.ndarray": "ndarray",
    "ndarray": "ndarray",
}


_STRING_GENERICS = {
    "list": "list",
    "List": "list",
    "typing.List": "list",
    "dict": "dict",
    "Dict": "dict",
    "typing.Dict": "dict",
    "NDArray": "ndarray",
    "npt.NDArray": "ndarray",
    "numpy.typing.NDArray": "ndarray",
}
_OPTIONAL_PREFIXES = ("Optional[", "typing.Optional[")


def _classify_text(text: str) -> tuple[str, bool, bool]:
    """Map an annotation that stayed text (unresolvable) to (wire type name, checked, optional).

    Knows the plain names of the checked types, ``Optional[X]``, ``X | None``
    and the generic list, dict and ndarray spellings; anything else is "any"."""
    text = text.strip()
    for prefix in _OPTIONAL_PREFIXES:
        if text.startswith(prefix) and text.endswith("]"):
            name, checked, _ = _classify_text(text[len(prefix) : -1])
            return name, checked, True
    parts = _split_top_level(text, "|")
    if len(parts) > 1:
        rest = [t for t in parts if t != "None"]
        if len(rest) == 1:
            name, checked, _ = _classify_text(rest[0])
            return name, checked, len(rest) != len(parts)
        return "any", False, False
    known = _STRING_ANNOTATIONS.get(text)
    if known:
        return known, True, False
    head, bracket, _ = text.partition("[")
    if bracket and text.endswith("]"):
        known = _STRING_GENERICS.get(head.strip())
        if known:
            return known, True, False
    return "any", False, False


def _split_top_level(text: str, sep: str) -> list[str]:
    """`text` split at each `sep` outside brackets, parts stripped."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _resolve_annotation(ann: Any, func: Callable[..., Any]) -> Any:
    """Evaluates one text annotation in the function's globals; its text if that fails.

    A quoted annotation under ``from __future__ import annotations`` is text
    twice over, so text that evaluates to text is evaluated again."""
    namespace = getattr(inspect.unwrap(func), "__globals__", {})
    for _ in range(2):
        if not isinstance(ann, str):
            return ann
        try:
            ann = eval(ann, namespace)  # noqa: S307 - annotations are code, as for typing.get_type_hints
        except Exception:  # an unresolvable annotation is classified from its text
            return ann
    return ann


def _classify(ann: Any) -> tuple[str, bool, bool]:
    """Map an annotation to (wire type name, checked, optional)."""
    if ann is inspect.Parameter.empty or ann is Any or ann is None:
        return "any", False, False
    if isinstance(ann, str):
        return _classify_text(ann)
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return _classify(typing.get_args(ann)[0])
    optional = False
    if origin is typing.Union or origin is types.UnionType:
        members = typing.get_args(ann)
        rest = [m for m in members if m is not type(None)]
        if len(rest) != 1:
            return "any", False, False
        optional = len(rest) != len(members)
        ann = rest[0]
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
            origin = typing.get_origin(ann)
    base = origin if origin is not None else ann
    name = _NAMES_BY_TYPE.get(base)
    if name is not None:
        return name, True, optional
    if isinstance(base, type):
        if base.__name__ == "ndarray" and base.__module__.startswith("numpy"):
            return "ndarray", True, optional
        if issubclass(base, _LISTISH):
            return "list", False, optional
        try:
            from collections.abc import Mapping as _Mapping
            from collections.abc import Sequence as _Sequence

            if issubclass(base, _Mapping):
                return "dict", False, optional
            if issubclass(base, _Sequence) and not issubclass(base, (str, bytes)):
                return "list", False, optional
        except TypeError:
            pass
    return "any", False, optional


_PARAM_KINDS = {
    inspect.Parameter.POSITIONAL_OR_KEYWORD: pb.PARAM_KIND_POSITIONAL_OR_KEYWORD,
    inspect.Parameter.POSITIONAL_ONLY: pb.PARAM_KIND_POSITIONAL_ONLY,
    inspect.Parameter.KEYWORD_ONLY: pb.PARAM_KIND_KEYWORD_ONLY,
    inspect.Parameter.VAR_POSITIONAL: pb.PARAM_KIND_VAR_POSITIONAL,
    inspect.Parameter.VAR_KEYWORD: pb.PARAM_KIND_VAR_KEYWORD,
}


def _optional_checker(chk: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        return None if v is None else chk(v)

    return check


@typing.final
class ToolPlan:
    """Everything the hot path needs about one tool, computed once."""

    __slots__ = (
        "name",
        "meta",
        "func",
        "plain",
        "attr",
        "sig",
        "spec",
        "by_name",
        "required",
        "checks",
        "simple",
        "fast",
        "batch",
    )

    def __init__(self, cls: type, meta: ToolMetadata) -> None:
        func = meta.function
        assert func is not None
        self.name = meta.name
        self.meta = meta
        self.attr = func.__name__
        raw = inspect.getattr_static(cls, self.attr, None)
        self.plain = inspect.isfunction(raw)
        # What the instance's attribute is: a decorator stacked over @tool
        # (functools.wraps copies the metadata, which names the inner
        # function) must run too.
        self.func = raw if self.plain else func
        full = inspect.signature(func)
        params = list(full.parameters.values())
        if self.plain and params and params[0].kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            params = params[1:]
        elif not self.plain:
            params = list(inspect.signature(getattr(cls, self.attr)).parameters.values())
        self.sig = full.replace(parameters=params)
        try:
            hints = typing.get_type_hints(inspect.unwrap(func))
        except Exception:  # one unresolvable forward reference: resolve each annotation on its own
            hints = {p.name: _resolve_annotation(p.annotation, func) for p in params}
        self.spec = pb.ToolSpec(
            name=meta.name,
            description=meta.description,
            supports_streaming=meta.supports_streaming,
            required_variables=list(meta.required_variables),
            is_async=meta.is_async,
        )
        # A batched tool's one parameter is the list of its calls: the host
        # is told of no parameters, each call's keywords are the tool's to read.
        self.batch: Batch | None = meta.batch
        if meta.batch is not None:
            self.spec.batch.CopyFrom(
                pb.BatchSpec(
                    max_size=meta.batch.max_size,
                    max_wait_ms=math.ceil(meta.batch.max_wait_ms),
                    stack=meta.batch.stack,
                )
            )
            params = []
        self.by_name: dict[str, inspect.Parameter] = {}
        required: list[str] = []
        checks: list[tuple[str, str, Callable[[Any], Any]]] = []
        simple = True
        for p in params:
            ann = hints.get(p.name, p.annotation)
            type_name, checked, optional = _classify(ann)
            if p.default is None:
                optional = True
            ps = self.spec.parameters.add(
                name=p.name,
                type=type_name,
                required=p.default is inspect.Parameter.empty
                and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD),
                kind=_PARAM_KINDS[p.kind],
            )
            if p.default is not inspect.Parameter.empty:
                try:
                    encode_into(p.default, ps.default_value)
                except EncodingError:
                    ps.ClearField("default_value")
            if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                simple = False
                continue
            if p.kind is inspect.Parameter.POSITIONAL_ONLY:
                simple = False
            self.by_name[p.name] = p
            if p.default is inspect.Parameter.empty:
                required.append(p.name)
            if checked:
                chk = _CHECKERS[type_name]
                checks.append((p.name, type_name, _optional_checker(chk) if optional else chk))
        self.required = tuple(required)
        self.checks = tuple(checks)
        self.simple = simple
        self.fast = False

    def bind(self, ex: pb.Execute) -> tuple[Sequence[Any], dict[str, Any]]:
        kwargs = {k: dec(v, 0) for k, v in ex.kwargs.items()} if ex.kwargs else {}
        args: Sequence[Any] = [dec(v, 0) for v in ex.args] if ex.args else ()
        checks = self.checks
        if self.simple and not args:
            by_name = self.by_name
            for k in kwargs:
                if k not in by_name:
                    raise BadArguments(
                        f"{self.name}() got an unexpected keyword argument {k!r}; "
                        f"parameters are: {', '.join(by_name) or 'none'}",
                        k,
                    )
            for r in self.required:
                if r not in kwargs:
                    raise BadArguments(f"{self.name}() is missing required parameter {r!r}", r)
            for name, expected, chk in checks:
                if name in kwargs:
                    v = kwargs[name]
                    try:
                        kwargs[name] = chk(v)
                    except _Mismatch:
                        raise self._mismatch(name, expected, v) from None
            return (), kwargs
        try:
            ba = self.sig.bind(*args, **kwargs)
        except TypeError as e:
            m = re.search(r"'([^']+)'", str(e))
            raise BadArguments(f"{self.name}(): {e}", m.group(1) if m else "") from None
        arguments = ba.arguments
        for name, expected, chk in checks:
            if name in arguments:
                v = arguments[name]
                try:
                    arguments[name] = chk(v)
                except _Mismatch:
                    raise self._mismatch(name, expected, v) from None
        return ba.args, ba.kwargs

    def _mismatch(self, name: str, expected: str, v: Any) -> BadArguments:
        got = type(v).__name__
        return BadArguments(
            f"{self.name}() parameter {name!r} expects {expected}, got {got}",
            name,
            {"expected": expected, "got": got},
        )


@typing.final
class FfiPlan:
    """A ``snakepit.ffi.*`` operation among the worker's plans: `fast` drives
    the inline run as for a tool; the runner runs it with no adapter instance."""

    __slots__ = ("name", "func", "kwargs_ok", "streams", "fast")

    #: FFI operations are never batched.
    batch: Batch | None = None

    def __init__(self, name: str, op: Any) -> None:
        self.name = name
        self.func = op.func
        self.kwargs_ok = op.kwargs_ok
        self.streams = op.streams
        self.fast = False


# Passed as the kwargs of an FFI operation called without any (never mutated).
NO_KWARGS: dict[str, Any] = {}

Plan = typing.Union[ToolPlan, FfiPlan]


# ---------------------------------------------------------------- adapters


def class_name(cls: type) -> str:
    """The class as module.QualifiedName."""
    return f"{cls.__module__}.{cls.__qualname__}"


def load_adapter(path: str) -> type:
    module_name, sep, class_name = path.rpartition(".")
    if not sep or not module_name or not class_name:
        raise ValueError(f"--adapter must be module.Class, got {path!r}")
    module = importlib.import_module(module_name)
    try:
        cls = getattr(module, class_name)
    except AttributeError:
        raise AttributeError(f"module {module_name!r} has no attribute {class_name!r}") from None
    if not isinstance(cls, type):
        raise TypeError(f"{path} is a {type(cls).__name__}, not a class")
    return cls


def tools_of(cls: type) -> list[ToolMetadata]:
    get_tools = getattr(cls, "get_tools", None)
    if callable(get_tools):
        return list(get_tools())
    tools: list[ToolMetadata] = BaseAdapter.get_tools.__func__(cls)  # type: ignore[attr-defined]
    return tools


def check_profile(profile: str, cls: type) -> None:
    """Raises ThreadSafetyError if the profile cannot run the adapter class."""
    if profile == "thread" and not is_thread_safe(cls):
        owner = next((k for k in cls.__mro__ if "__thread_safe__" in vars(k)), None)
        if owner is None or owner is BaseAdapter:
            how = "does not declare"
        else:
            declared = vars(owner)["__thread_safe__"]
            where = "" if owner is cls else f" (inherited from {class_name(owner)})"
            how = f"declares __thread_safe__ = {declared!r}{where}, not"
        raise ThreadSafetyError(
            f"adapter class {class_name(cls)} {how} __thread_safe__ = True, so the thread profile, which "
            "serves concurrent requests on one shared instance, cannot run it. Set __thread_safe__ = True "
            "on the class once it is safe to use from several threads at once (for instance by deriving "
            "from snakepit_bridge.ThreadSafeAdapter and locking shared state with acquire_lock()), or run "
            "it in the process profile (--profile process)."
        )

