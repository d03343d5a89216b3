"""The introspector behind ``snakepit gen rust MODULE``: a plain-data
description of a Python module (its functions, classes, their signatures and
types) that the Rust side turns into typed Rust wrappers.

The format is schema 1, described in ``docs/codegen.md`` and read by
``codegen/src/describe.rs``. Parameter names, kinds and defaults come from the running
interpreter (``inspect.signature``); types come from the module's stubs when
it has them (typeshed, ``*-stubs`` packages, inline ``.pyi``; see ``_stubs``),
else from its annotations. Anything found but not usable is listed under
``skipped`` with the reason, so a wrapper that is missing can be explained.

``python -m snakepit_bridge.codegen describe MODULE`` prints the description
as JSON; ``python -m snakepit_bridge.codegen versions M1 M2`` prints the
versions a description would record (to check a cache without describing).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import platform
import sys
import types
import typing
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._codegen_discovery import clean, error, exported, import_root, members, modules, selected, version_of, versions
from ._codegen_types import Type, Types, annotation_expr, is_known, merge_overloads, of_kind, union
from ._stubs import StubClass, StubFunction, StubIndex, StubParam

if TYPE_CHECKING:
    import argparse

__all__ = ["MODES", "SCHEMA", "describe", "describe_json", "main", "versions"]

SCHEMA = 1
MODES = ("root", "exports", "public", "explicit")
METHOD_SCOPES = ("all", "defined")
# The stub sources, in the order the description lists them.
STUB_SOURCES = ("typeshed", "stubs-package", "inline")

# --- Text ---------------------------------------------------------------------


def _default(value: object) -> str | None:
    """A runtime default as the description writes it: its repr, or "..."
    when the repr would hold an address or a path."""
    if value is inspect.Parameter.empty:
        return None
    try:
        text = repr(value)
    except Exception:
        return "..."
    return text if clean(text) == text else "..."


def _own_doc(cls: type) -> str | None:
    doc = vars(cls).get("__doc__")
    return inspect.cleandoc(doc) if isinstance(doc, str) else None


# --- Signatures -----------------------------------------------------------------

_KIND_NAMES = {
    inspect.Parameter.POSITIONAL_ONLY: "positional_only",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional_or_keyword",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword_only",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}
_KIND_ORDER = tuple(_KIND_NAMES.values())
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_ARGS_KWARGS = [inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD]
_C_CALLABLES = (
    types.BuiltinFunctionType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.ClassMethodDescriptorType,
)


def _runtime_signature(obj: object) -> inspect.Signature:
    """``inspect.signature`` with its annotations evaluated when they can be
    (else left as the strings ``annotation_expr`` parses); raises (mostly
    ValueError/TypeError) when there is no signature."""
    func = typing.cast("Callable[..., Any]", obj)
    try:
        return inspect.signature(func, eval_str=True)
    except Exception:
        return inspect.signature(func)


def _unbound(func: object) -> bool:
    """Whether `func` is a function as found on a class (its first parameter is self)."""
    return inspect.isfunction(func) or isinstance(func, types.MethodDescriptorType | types.WrapperDescriptorType)


def _no_signature(obj: object, error: BaseException) -> str:
    if isinstance(obj, _C_CALLABLES):
        return "no signature: C function without text signature"
    return f"no signature: {clean(str(error))}"


# --- Members ------------------------------------------------------------------


def _member_kind(raw: object) -> str | None:
    """How a class attribute (as ``getattr_static`` finds it) is called:
    static/class/instance, "property", or None when it is neither."""
    if isinstance(raw, staticmethod | types.BuiltinFunctionType):
        return "static"
    if isinstance(raw, classmethod | types.ClassMethodDescriptorType):
        return "class"
    if isinstance(raw, property | functools.cached_property | types.GetSetDescriptorType | types.MemberDescriptorType):
        return "property"
    if isinstance(raw, type) or not callable(raw):
        return None
    return "instance"


def _class_members(cls: type, scope: str) -> list[tuple[str, str, object]]:
    """(name, kind, attribute) of a class's public methods and properties,
    sorted by name: from its MRO without ``object`` ("all"), or its own ("defined")."""
    owners = [cls] if scope == "defined" else [k for k in cls.__mro__ if k is not object]
    found = []
    for name in sorted({n for k in owners for n in vars(k) if not n.startswith("_")}):
        try:
            raw = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        kind = _member_kind(raw)
        if kind is not None:
            found.append((name, kind, raw))
    return found


# --- Describing -----------------------------------------------------------------


class _Describer:
    """One description: the stubs read, the classes it names and what it skipped."""

    def __init__(self, root: str, max_class_methods: int | None, scope: str) -> None:
        self.root = root
        self.max_class_methods = max_class_methods
        self.scope = scope
        self.types = Types()
        self.stubs = StubIndex(is_known)
        self.sources: set[str] = set()
        self.skipped: list[dict[str, str]] = []

    def skip(self, module: str, name: str, kind: str, reason: str) -> None:
        self.skipped.append({"module": module, "name": name, "kind": kind, "reason": reason})

    # Stubs

    def _stub_for(self, module: str, name: str, obj: object) -> StubFunction | StubClass | None:
        """The stub of `name` in `module`, else where the object says it was defined."""
        found = self.stubs.lookup(module, name)
        home, own_name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if found is None and isinstance(home, str) and isinstance(own_name, str) and home != module:
            found = self.stubs.lookup(home, own_name)
        return found

    def _read(self, annotation: Any, stub: StubFunction, owner: Type | None, output: bool) -> Type:
        return self.types.normalize(self.stubs.read(annotation, stub.module), owner, output)

    def _stub_signature(
        self, stub: StubFunction, drop_first: bool, owner: Type | None
    ) -> tuple[list[dict[str, Any]], dict[str, Type], Type]:
        """A stub's parameters (overloads merged: a parameter some overload
        lacks or defaults is optional), their types by name, and its return."""
        overloads = stub.params(drop_first)
        seen: dict[str, list[tuple[StubParam, Type]]] = {}
        for overload in overloads:
            for p in overload:
                seen.setdefault(p.name, []).append((p, self._read(p.annotation, stub, owner, False)))
        types_by_name = {name: merge_overloads([t for _, t in found]) for name, found in seen.items()}
        params: list[dict[str, Any]] = []
        for name, found in seen.items():
            kinds = {p.kind for p, _ in found}
            kind = found[-1][0].kind if len(kinds) > 1 else found[0][0].kind
            defaults = [p.default for p, _ in found if p.default is not None]
            optional = len(found) < len(overloads) and kind not in ("var_positional", "var_keyword")
            default = defaults[0] if defaults else ("..." if optional else None)
            params.append({"name": name, "kind": kind, "default": default, "type": types_by_name[name]})
        params.sort(key=lambda p: _KIND_ORDER.index(p["kind"]))
        returns = union([self._read(r, stub, owner, True) for r in stub.returns()])
        return params, types_by_name, returns

    def signature(
        self, obj: object, stub: StubFunction | None, drop_self: bool, owner: Type | None
    ) -> tuple[list[dict[str, Any]], Type, str] | str:
        """Parameters, return type and where they came from, or the reason there are none."""
        stub_params: list[dict[str, Any]] = []
        stub_types: dict[str, Type] = {}
        stub_returns: Type | None = None
        if stub is not None:
            # A method's stub has self/cls first (even __new__), a static method's not.
            stub_drop = (owner is not None and not stub.is_static) or stub.bound
            stub_params, stub_types, stub_returns = self._stub_signature(stub, stub_drop, owner)
            self.sources.add(stub.module.source)
        try:
            sig = _runtime_signature(obj)
        except Exception as e:  # ValueError/TypeError: none; anything else: none that can be read
            if stub is None:
                return _no_signature(obj, e)
            return stub_params, stub_returns or of_kind("any"), "stub"
        runtime = list(sig.parameters.values())
        if drop_self and runtime and runtime[0].kind in _POSITIONAL:
            runtime = runtime[1:]
        if stub is not None and [p.kind for p in runtime] == _ARGS_KWARGS:
            # (*args, **kwargs) says nothing (numpy's ufuncs on 3.13): the stub says more.
            return stub_params, stub_returns or of_kind("any"), "stub"
        params = [
            {
                "name": p.name,
                "kind": _KIND_NAMES[p.kind],
                "default": _default(p.default),
                "type": stub_types.get(p.name) or self.types.normalize(annotation_expr(p.annotation), owner, False),
            }
            for p in runtime
        ]
        if stub_returns is not None:
            return params, stub_returns, "runtime+stub"
        return params, self.types.normalize(annotation_expr(sig.return_annotation), owner, True), "runtime"

    # Functions

    def function(self, module: str, name: str, obj: object) -> dict[str, Any] | None:
        found = self._stub_for(module, name, obj)
        stub = found if isinstance(found, StubFunction) else None
        return self._callable(module, name, name, obj, stub, self.signature(obj, stub, False, None), "function")

    def _callable(
        self,
        module: str,
        name: str,
        skip_as: str,
        obj: object,
        stub: StubFunction | None,
        built: tuple[list[dict[str, Any]], Type, str] | str,
        kind: str,
    ) -> dict[str, Any] | None:
        """A function's or method's entry from its built signature; a
        signature that could not be built (a reason) is a skip instead."""
        if isinstance(built, str):
            self.skip(module, skip_as, "function" if kind == "function" else "method", built)
            return None
        params, returns, origin = built
        return {
            "name": name,
            "doc": inspect.getdoc(obj),
            "params": params,
            "returns": returns,
            "signature": origin,
            "is_async": inspect.iscoroutinefunction(obj) or bool(stub and stub.is_async),
            "kind": kind,
        }

    # Classes

    def klass(self, module: str, name: str, cls: type) -> dict[str, Any]:
        owner = {"kind": "class", "module": module, "name": name}
        found = self._stub_for(module, name, cls)
        stub = found if isinstance(found, StubClass) else None
        if stub is not None:
            self.sources.add(stub.module.source)
        members = _class_members(cls, self.scope)
        methods = self._capped(module, name, cls, [(n, k, raw) for n, k, raw in members if k != "property"])
        described = [self.method(module, name, cls, m, kind, stub, owner) for m, kind, _ in methods]
        return {
            "name": name,
            "module": module,
            "doc": _own_doc(cls),
            "init": self.init(module, name, cls, stub, owner),
            "methods": [m for m in described if m is not None],
            "properties": [self.property(n, raw, stub, owner) for n, k, raw in members if k == "property"],
        }

    def init(self, module: str, name: str, cls: type, stub: StubClass | None, owner: Type) -> dict[str, Any] | None:
        constructor = self.stubs.constructor(stub) if stub else None
        built = self.signature(cls, constructor, False, owner)
        if isinstance(built, str):
            self.skip(module, f"{name}.__init__", "method", built)
            return None
        params, _, origin = built
        return {"params": params, "doc": _init_doc(cls), "signature": origin}

    def _capped(
        self, module: str, name: str, cls: type, methods: list[tuple[str, str, object]]
    ) -> list[tuple[str, str, object]]:
        """The guardrail of ``max_class_methods``: over it, only the methods
        declared on the class itself; still over, the first of those by name."""
        cap = self.max_class_methods
        if cap is None or len(methods) <= cap:
            return methods
        declared = [m for m in methods if m[0] in vars(cls)]
        if len(declared) <= cap:
            kept, how = declared, "kept the methods declared on the class itself"
        else:
            kept = declared[:cap]
            how = f"kept the first {cap} by name of the {len(declared)} declared on the class itself"
        reason = f"too many methods ({len(methods)} > max_class_methods={cap}): {how}"
        for m in methods:
            if m not in kept:
                self.skip(module, f"{name}.{m[0]}", "method", reason)
        return kept

    def method(
        self, module: str, cls_name: str, cls: type, name: str, kind: str, stub: StubClass | None, owner: Type
    ) -> dict[str, Any] | None:
        try:
            func = getattr(cls, name)
        except Exception as e:
            self.skip(module, f"{cls_name}.{name}", "method", f"no signature: {error(e)}")
            return None
        method_stub = self._method_stub(cls, name, stub)
        built = self.signature(func, method_stub, kind == "instance" and _unbound(func), owner)
        return self._callable(module, name, f"{cls_name}.{name}", func, method_stub, built, kind)

    def _method_stub(self, cls: type, name: str, stub: StubClass | None) -> StubFunction | None:
        """The stub of a method: on the class's stub (or its stub bases), else
        on the stub of the class of the MRO that defines it (``dict.copy`` of
        a dict subclass whose module has no stub)."""
        found = self.stubs.method(stub, name) if stub else None
        if found is None:
            definer = next((k for k in cls.__mro__ if name in vars(k)), cls)
            if definer is not cls:
                definer_stub = self._stub_for(definer.__module__, definer.__qualname__, definer)
                if isinstance(definer_stub, StubClass):
                    found = self.stubs.method(definer_stub, name)
        return found

    def property(self, name: str, raw: object, stub: StubClass | None, owner: Type) -> dict[str, Any]:
        """A property's type from the stub (``@property`` or an annotated
        attribute), else from its getter's return annotation."""
        runtime_setter = isinstance(raw, property) and raw.fset is not None
        found = self.stubs.property(stub, name) if stub else None
        if found is not None:
            annotation, stub_module, settable = found
            self.sources.add(stub_module.source)
            kind = self.types.normalize(self.stubs.read(annotation, stub_module), owner, True)
            return {"name": name, "doc": inspect.getdoc(raw), "type": kind, "settable": settable or runtime_setter}
        getter = raw.fget if isinstance(raw, property) else getattr(raw, "func", None)
        try:
            returns = _runtime_signature(getter).return_annotation if getter else inspect.Parameter.empty
        except Exception:
            returns = inspect.Parameter.empty
        kind = self.types.normalize(annotation_expr(returns), owner, True)
        return {"name": name, "doc": inspect.getdoc(raw), "type": kind, "settable": runtime_setter}

    # Modules

    def module(
        self,
        name: str,
        mod: types.ModuleType,
        functions: Sequence[tuple[str, object]],
        classes: Sequence[tuple[str, type]],
    ) -> dict[str, Any]:
        described = [self.function(name, n, obj) for n, obj in functions]
        return {
            "name": name,
            "doc": inspect.getdoc(mod),
            "functions": [f for f in described if f is not None],
            "classes": [self.klass(name, n, cls) for n, cls in classes],
        }


def _init_doc(cls: type) -> str | None:
    """The doc of the ``__init__`` (else ``__new__``) the class gets from below
    ``object``; not object's own ("Initialize self.  See help(type(self))..."),
    which C types repeat, nor the doc of the descriptor type wrapping it."""
    for method in ("__init__", "__new__"):
        for k in cls.__mro__[:-1]:
            if method in vars(k):
                entry = vars(k)[method]
                doc = getattr(entry, "__doc__", None)
                # A staticmethod (``__new__``) of an undocumented function
                # shows the doc of staticmethod itself.
                generic = doc in (object.__init__.__doc__, object.__new__.__doc__, type(entry).__doc__)
                return inspect.cleandoc(doc) if isinstance(doc, str) and not generic else None
    return None


def _members_watching_deprecation(
    mod: types.ModuleType,
) -> tuple[tuple[list[tuple[str, object]], list[tuple[str, type]]], str | None]:
    """The members of `mod`, and the first DeprecationWarning reaching them
    raised (a deprecated module warns as its names are looked up)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        found = members(mod)
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    return found, (clean(str(deprecations[0].message)) if deprecations else None)


def _describe(
    module: str,
    functions: Sequence[str] | None,
    classes: Sequence[str] | None,
    mode: str,
    max_class_methods: int | None,
    class_method_scope: str,
    max_modules: int,
    names: Sequence[str] | None,
) -> dict[str, Any]:
    """`describe`, its warnings not filtered."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (one of {', '.join(MODES)})")
    if class_method_scope not in METHOD_SCOPES:
        raise ValueError(f"unknown class_method_scope {class_method_scope!r} (one of {', '.join(METHOD_SCOPES)})")
    if max_modules < 1:
        raise ValueError(f"max_modules must be at least 1, not {max_modules}")
    root = import_root(module)
    version, stdlib = version_of(module)
    d = _Describer(module, max_class_methods, class_method_scope)
    if functions is not None or classes is not None or names is not None:
        picked_functions, picked_classes = selected(root, functions, classes, names)
        plan = [(module, root, picked_functions, picked_classes)]
        # The module's other classes can still be named by what is described.
        named = [(module, picked_classes), (module, members(root)[1])]
    else:
        plan = []
        for name, mod in modules(d, root, mode, max_modules):
            if mode == "explicit" and exported(mod) is None:
                plan.append((name, mod, [], []))
                continue
            found, deprecation = _members_watching_deprecation(mod)
            if deprecation is not None and name != module:
                # A shim kept for old imports (numpy.linalg.linalg): its API is
                # described where it moved.
                d.skip(d.root, name, "module", f"deprecated: {deprecation}")
                continue
            plan.append((name, mod, *found))
        named = [(name, module_classes) for name, _, _, module_classes in plan]
    for name, module_classes in named:
        for class_name, cls in module_classes:
            d.types.add_class(cls, name, class_name)
    described = [d.module(name, mod, fs, cs) for name, mod, fs, cs in plan]
    settings: dict[str, Any] = {
        "mode": mode,
        "functions": list(functions) if functions is not None else None,
        "classes": list(classes) if classes is not None else None,
        "max_class_methods": max_class_methods,
        "class_method_scope": class_method_scope,
    }
    if names is not None:  # only when given: the schema's settings otherwise
        settings["names"] = list(names)
    return {
        "schema": SCHEMA,
        "module": module,
        "version": version,
        "stdlib": stdlib,
        "python": platform.python_version(),
        "stubs": [s for s in STUB_SOURCES if s in d.sources],
        "settings": settings,
        "modules": described,
        "skipped": d.skipped,
    }


def describe(
    module: str,
    functions: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    mode: str = "root",
    max_class_methods: int | None = None,
    class_method_scope: str = "all",
    max_modules: int = 200,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The description of `module` (schema 1): plain data for the Rust generator.

    Named `functions`/`classes` describe exactly those names of the module
    (`names`: functions or classes, whichever each is); without them, `mode`
    says which modules and members (see the schema). What the library warns
    of while it is looked through (deprecations, mostly) is not shown: the
    description says what it skipped and why.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _describe(
            module, functions, classes, mode, max_class_methods, class_method_scope, max_modules, names
        )


def describe_json(module: str, **settings: Any) -> str:
    """`describe` as JSON text: what ``snakepit gen rust`` asks a worker for.
    Text, not the dict itself: a description nests deeper than the wire
    carries values (types within parameters within methods within classes),
    and one string crosses in one piece."""
    import json

    return json.dumps(describe(module, **settings), sort_keys=False, ensure_ascii=False)


# --- Command line -----------------------------------------------------------------


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _parser() -> argparse.ArgumentParser:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m snakepit_bridge.codegen",
        description="Describe a Python module for `snakepit gen rust` (JSON on stdout).",
    )
    commands = p.add_subparsers(dest="command", required=True)
    d = commands.add_parser("describe", help="describe a module")
    d.add_argument("module")
    d.add_argument("--functions", type=_names, help="comma-separated function names (only these)")
    d.add_argument("--classes", type=_names, help="comma-separated class names (only these)")
    d.add_argument("--names", type=_names, help="comma-separated names of functions or classes (only these)")
    d.add_argument("--mode", default="root", help=f"which modules and members: {', '.join(MODES)}")
    d.add_argument("--max-class-methods", type=int, help="methods per class before the guardrail applies")
    d.add_argument("--class-method-scope", default="all", help="all (through the MRO) or defined (the class's own)")
    d.add_argument(
        "--max-modules", type=int, default=200, help="modules described at most, the root included (not in root mode)"
    )
    v = commands.add_parser("versions", help="the version each module would be described with")
    v.add_argument("modules", nargs="+")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run: Callable[[], object]
    if args.command == "versions":
        run = functools.partial(versions, args.modules)
    else:
        run = functools.partial(
            describe_json,
            args.module,
            functions=args.functions,
            classes=args.classes,
            mode=args.mode,
            max_class_methods=args.max_class_methods,
            class_method_scope=args.class_method_scope,
            max_modules=args.max_modules,
            names=args.names,
        )
    try:
        # What imported modules print must not mix into the JSON.
        with contextlib.redirect_stdout(sys.stderr):
            result = run()
    except (ImportError, LookupError, TypeError, ValueError) as e:
        print(f"snakepit codegen: {e}", file=sys.stderr)
        return 1
    import json

    text = result if isinstance(result, str) else json.dumps(result, sort_keys=False, ensure_ascii=False)
    sys.stdout.buffer.write(text.encode("utf-8") + b"\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
