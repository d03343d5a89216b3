"""Stub files (``.pyi``) for the code generator (``codegen``): found, parsed
for the running interpreter, and read as type expressions.

Stubs say what C functions and classes do not tell at run time (their types,
often their signatures). A stub is found through ``typeshed_client`` when it
is installed (typeshed's stdlib stubs, ``*-stubs`` packages, inline stubs),
else on ``sys.path`` (``*-stubs`` packages and ``.pyi`` files next to the
module, as numpy ships). ``if sys.version_info``/``sys.platform`` blocks are
decided for this interpreter, so each name has the definition that applies
here. Types are read into ``TypeExpr`` trees with aliases and re-exports
followed; ``_codegen_types`` turns those into the description's types.
"""

from __future__ import annotations

import ast
import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ANY",
    "LITERAL",
    "StubClass",
    "StubFunction",
    "StubIndex",
    "StubModule",
    "StubParam",
    "TypeExpr",
    "parse_type",
]

# How far aliases, re-exports and base classes are followed: deep enough for
# real stubs, and a bound on a cycle.
MAX_DEPTH = 12
# The name of a TypeExpr that holds one value of a Literal[...].
LITERAL = "<literal>"
# The name of a TypeExpr for a bracketed list of types (Callable's parameters).
TYPE_LIST = "<list>"
# The source of a StubModule read from a module's .py (no stub of its own):
# followed for re-exports and aliases (numpy's ``numpy._typing``), never a definition.
SOURCE = "source"

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
# PEP 695's `type X = ...` statement (Python 3.12+).
_TYPE_ALIAS: Any = getattr(ast, "TypeAlias", None)


@dataclass(frozen=True, slots=True, eq=False)
class TypeExpr:
    """A type as written, reduced to a name and its subscript arguments.

    ``name`` is the last component of the written name (``Optional``,
    ``int``, ``ndarray``), ``Union`` for ``X | Y``, ``None`` for None,
    ``...`` for an ellipsis, or ``LITERAL``/``TYPE_LIST``. ``obj`` is the
    object a runtime annotation named, so a class can be matched by identity.
    """

    name: str
    args: tuple[TypeExpr, ...] | None = None
    value: object = None
    obj: object = None


ANY = TypeExpr("Any")


def _type_expr(node: ast.expr | None, resolve: Callable[[Sequence[str]], TypeExpr]) -> TypeExpr:
    """The type written as `node`; `resolve` gives the type a (dotted) name stands for."""
    if node is None:
        return ANY
    if isinstance(node, ast.Constant):
        if node.value is None:
            return TypeExpr("None")
        if node.value is Ellipsis:
            return TypeExpr("...")
        if isinstance(node.value, str):
            return parse_type(node.value, resolve)
        return ANY
    if isinstance(node, ast.Name | ast.Attribute):
        parts = _dotted(node)
        return resolve(parts) if parts else ANY
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return TypeExpr("Union", (_type_expr(node.left, resolve), _type_expr(node.right, resolve)))
    if isinstance(node, ast.List):
        return TypeExpr(TYPE_LIST, tuple(_type_expr(e, resolve) for e in node.elts))
    if isinstance(node, ast.Subscript):
        return _subscript(node, resolve)
    return ANY


def _subscript(node: ast.Subscript, resolve: Callable[[Sequence[str]], TypeExpr]) -> TypeExpr:
    base = _type_expr(node.value, resolve)
    if base.args is not None:
        # An alias that was expanded (its own type variables are already Any).
        return base
    elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    if base.name == "Literal":
        return TypeExpr("Literal", tuple(_literal(e) for e in elts))
    if base.name == "Annotated":
        # Only the first argument is a type; the rest is metadata.
        return TypeExpr("Annotated", (_type_expr(elts[0], resolve),))
    return TypeExpr(base.name, tuple(_type_expr(e, resolve) for e in elts), obj=base.obj)


def _literal(node: ast.expr) -> TypeExpr:
    try:
        return TypeExpr(LITERAL, value=ast.literal_eval(node))
    except (ValueError, TypeError, SyntaxError):  # an enum member or another name
        return ANY


def parse_type(text: str, resolve: Callable[[Sequence[str]], TypeExpr]) -> TypeExpr:
    """The type written as the string `text` (a forward reference, a string annotation)."""
    try:
        return _type_expr(ast.parse(text.strip(), mode="eval").body, resolve)
    except SyntaxError:
        return ANY


def _dotted(node: ast.expr) -> list[str]:
    """``a.b.c`` as its parts; empty when `node` is not a dotted name."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return [*base, node.attr] if base else []
    return []


def _unsubscripted(node: ast.expr) -> ast.expr:
    """``Generic[T]`` as ``Generic``: what a subscripted name names."""
    return node.value if isinstance(node, ast.Subscript) else node


def _literal_default(node: ast.expr | None) -> str | None:
    """A stub default as the description writes it: the repr of a literal, else "..."."""
    if node is None:
        return None
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return "..."
    return "..." if value is Ellipsis else repr(value)


# --- Conditions -------------------------------------------------------------


class _Unknown(Exception):
    """A condition this reader cannot decide."""


def _holds(test: ast.expr) -> bool:
    """Whether an ``if`` of a stub is true here; one that cannot be decided
    counts as true (its body is the stub's main case)."""
    try:
        return bool(_value(test))
    except _Unknown:
        return True


def _value(node: ast.expr) -> Any:
    parts = _dotted(node)
    if parts in (["sys", "version_info"], ["version_info"]):
        return tuple(sys.version_info)
    if parts in (["sys", "platform"], ["platform"]):
        return sys.platform
    if parts and parts[-1] == "TYPE_CHECKING":
        return True
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_value(e) for e in node.elts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _value(node.operand)
    if isinstance(node, ast.BoolOp):
        values = [bool(_value(v)) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        return _compare(node.ops[0], _value(node.left), _value(node.comparators[0]))
    if isinstance(node, ast.Subscript):
        return _subscript_value(node)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not node.keywords:
        # sys.platform.startswith("linux")
        if node.func.attr in ("startswith", "endswith"):
            target = _value(node.func.value)
            if isinstance(target, str):
                return bool(getattr(target, node.func.attr)(*(_value(a) for a in node.args)))
    raise _Unknown


def _subscript_value(node: ast.Subscript) -> Any:
    """``sys.version_info[0]`` and ``sys.version_info[:2]``."""
    target = _value(node.value)
    index = node.slice
    if isinstance(index, ast.Slice):
        lower = _value(index.lower) if index.lower else None
        upper = _value(index.upper) if index.upper else None
        return target[lower:upper]
    return target[_value(index)]


def _compare(op: ast.cmpop, left: Any, right: Any) -> bool:
    try:
        if isinstance(op, ast.Eq):
            return bool(left == right)
        if isinstance(op, ast.NotEq):
            return bool(left != right)
        if isinstance(op, ast.Lt):
            return bool(left < right)
        if isinstance(op, ast.LtE):
            return bool(left <= right)
        if isinstance(op, ast.Gt):
            return bool(left > right)
        if isinstance(op, ast.GtE):
            return bool(left >= right)
    except TypeError:
        pass
    raise _Unknown


def _statements(body: Sequence[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements of `body` that apply here: each ``if`` replaced by the
    branch (``elif``/``else`` included) its condition takes."""
    for stmt in body:
        if isinstance(stmt, ast.If):
            yield from _statements(stmt.body if _holds(stmt.test) else stmt.orelse)
        elif isinstance(stmt, ast.Try):
            yield from _statements(stmt.body)
        else:
            yield stmt


# --- Parsed stubs -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StubParam:
    """One parameter of a stub ``def``."""

    name: str
    kind: str  # as in the description: positional_only, ..., var_keyword
    default: str | None  # None: required
    annotation: ast.expr | None


@dataclass(frozen=True, slots=True)
class StubFunction:
    """A function or method of a stub: its ``def`` (several when overloaded)
    and the stub module its names are read in."""

    defs: tuple[FunctionNode, ...]
    module: StubModule
    # The ``__call__`` of a callable object's class (numpy's ``zeros: Final[_ConstructorEmpty]``,
    # its ufuncs): its first parameter is self even where the object is a function.
    bound: bool = False

    @property
    def is_static(self) -> bool:
        return _decorated(self.defs[0], "staticmethod")

    @property
    def is_async(self) -> bool:
        return any(isinstance(d, ast.AsyncFunctionDef) for d in self.defs)

    def params(self, drop_first: bool) -> list[list[StubParam]]:
        """The parameters of each ``def``; `drop_first` drops self/cls."""
        return [_params(d, drop_first) for d in self.defs]

    def returns(self) -> list[ast.expr | None]:
        return [d.returns for d in self.defs]


@dataclass(slots=True)
class StubClass:
    """A class of a stub: its methods, properties (getter ``def``, and whether
    there is a setter) and annotated attributes."""

    name: str
    module: StubModule
    bases: list[ast.expr]
    methods: dict[str, list[FunctionNode]] = field(default_factory=dict)
    properties: dict[str, tuple[FunctionNode, bool]] = field(default_factory=dict)
    attributes: dict[str, ast.expr] = field(default_factory=dict)


@dataclass(slots=True)
class StubModule:
    """The names a stub defines or imports, as they are for this interpreter."""

    name: str
    # "typeshed", "stubs-package" or "inline"; SOURCE for a module's .py,
    # read only for what it imports and its type aliases.
    source: str
    package: str  # what relative imports are relative to
    functions: dict[str, list[FunctionNode]] = field(default_factory=dict)
    classes: dict[str, StubClass] = field(default_factory=dict)
    aliases: dict[str, ast.expr] = field(default_factory=dict)
    variables: dict[str, ast.expr] = field(default_factory=dict)  # name -> annotation
    type_vars: set[str] = field(default_factory=set)
    imports: dict[str, tuple[str, str]] = field(default_factory=dict)  # local name -> (module, name)
    module_names: dict[str, str] = field(default_factory=dict)  # local name -> module (import X as Y)
    star_imports: list[str] = field(default_factory=list)


def _decorated(node: FunctionNode, name: str) -> bool:
    return any(_dotted(d)[-1:] == [name] for d in node.decorator_list)


def _params(node: FunctionNode, drop_first: bool) -> list[StubParam]:
    a = node.args
    positional = [(p, "positional_only") for p in a.posonlyargs] + [(p, "positional_or_keyword") for p in a.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults))
    defaults += a.defaults
    out = []
    for (p, kind), d in zip(positional, defaults):
        name = p.arg
        if name.startswith("__") and not name.endswith("__"):
            # The pre-PEP 570 spelling of a positional-only parameter.
            name, kind = name[2:], "positional_only"
        out.append(StubParam(name, kind, _literal_default(d), p.annotation))
    if a.vararg:
        out.append(StubParam(a.vararg.arg, "var_positional", None, a.vararg.annotation))
    for p, d in zip(a.kwonlyargs, a.kw_defaults):
        out.append(StubParam(p.arg, "keyword_only", _literal_default(d), p.annotation))
    if a.kwarg:
        out.append(StubParam(a.kwarg.arg, "var_keyword", None, a.kwarg.annotation))
    if drop_first and out and out[0].kind in ("positional_only", "positional_or_keyword"):
        out = out[1:]
    return out


def _add_def(defs: dict[str, list[FunctionNode]], node: FunctionNode) -> None:
    """Overloads accumulate; a plain ``def`` stands alone (the implementation
    after overloads, should a stub have one, adds nothing)."""
    known = defs.get(node.name)
    if _decorated(node, "overload"):
        if known and not all(_decorated(d, "overload") for d in known):
            known = None
        defs[node.name] = [*(known or []), node]
    elif not known or not all(_decorated(d, "overload") for d in known):
        defs[node.name] = [node]


def _is_alias_annotation(node: ast.expr) -> bool:
    return _dotted(node)[-1:] == ["TypeAlias"]


def _parse_module(tree: ast.Module, name: str, source: str, package: str) -> StubModule:
    m = StubModule(name, source, package)
    for stmt in _statements(tree.body):
        if isinstance(stmt, FunctionNode):
            _add_def(m.functions, stmt)
        elif isinstance(stmt, ast.ClassDef):
            m.classes[stmt.name] = _parse_class(stmt, m)
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            if stmt.value is not None and _is_alias_annotation(stmt.annotation):
                m.aliases[stmt.target.id] = stmt.value
            else:
                m.variables[stmt.target.id] = stmt.annotation
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            _parse_assign(m, stmt.targets[0].id, stmt.value)
        elif _TYPE_ALIAS is not None and isinstance(stmt, _TYPE_ALIAS):
            m.aliases[stmt.name.id] = stmt.value
        elif isinstance(stmt, ast.ImportFrom):
            _parse_import_from(m, stmt)
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    m.module_names[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    m.module_names[top] = top
    return m


def _parse_assign(m: StubModule, name: str, value: ast.expr) -> None:
    """``X = TypeVar("X")`` is a type variable, ``X = NewType("X", int)``
    stands for int, ``X = Union[...]`` is an alias."""
    if isinstance(value, ast.Call):
        called = _dotted(value.func)[-1:]
        if called == ["NewType"] and len(value.args) == 2:
            m.aliases[name] = value.args[1]
        else:
            m.type_vars.add(name)
    elif isinstance(value, ast.Name | ast.Attribute | ast.Subscript | ast.BinOp):
        m.aliases[name] = value


def _parse_import_from(m: StubModule, stmt: ast.ImportFrom) -> None:
    if stmt.level:
        base = m.package.split(".")
        base = base[: len(base) - (stmt.level - 1)]
        source = ".".join([*base, *([stmt.module] if stmt.module else [])])
    else:
        source = stmt.module or ""
    for alias in stmt.names:
        if alias.name == "*":
            m.star_imports.append(source)
        else:
            m.imports[alias.asname or alias.name] = (source, alias.name)


def _parse_class(node: ast.ClassDef, module: StubModule) -> StubClass:
    c = StubClass(node.name, module, list(node.bases))
    for stmt in _statements(node.body):
        if isinstance(stmt, FunctionNode):
            setter = [d for d in stmt.decorator_list if _dotted(d)[-2:] == [stmt.name, "setter"]]
            if _decorated(stmt, "property") or _decorated(stmt, "cached_property"):
                c.properties[stmt.name] = (stmt, False)
            elif setter and stmt.name in c.properties:
                c.properties[stmt.name] = (c.properties[stmt.name][0], True)
            elif not any(_dotted(d)[-1:] == ["deleter"] for d in stmt.decorator_list):
                _add_def(c.methods, stmt)
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            c.attributes[stmt.target.id] = stmt.annotation
    return c


# --- Finding stubs ----------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _search_context(search_path: tuple[str, ...]) -> Any:
    """typeshed_client's search context for `search_path` (its bundled
    typeshed), or None when typeshed_client is not installed."""
    try:
        import typeshed_client
    except ImportError:
        return None
    from pathlib import Path

    return typeshed_client.get_search_context(search_path=[Path(p) for p in search_path if p])


def _typeshed_client_stub(module: str) -> tuple[str, str] | None:
    """The stub typeshed_client finds (typeshed, then ``*-stubs``, then
    inline), or None (also when typeshed_client is not installed)."""
    context = _search_context(tuple(sys.path))
    if context is None:
        return None
    import typeshed_client

    path = typeshed_client.get_stub_file(module, search_context=context)
    if path is None:
        return None
    if path.is_relative_to(context.typeshed):
        return str(path), "typeshed"
    return str(path), _source_of(str(path))


def _source_of(path: str) -> str:
    parts = os.path.normpath(path).split(os.sep)
    return "stubs-package" if any(p.endswith("-stubs") for p in parts) else "inline"


def _search_path_stub(module: str) -> tuple[str, str] | None:
    """A ``*-stubs`` package or an inline ``.pyi`` on ``sys.path``."""
    top, *rest = module.split(".")
    for directory in (f"{top}-stubs", top):
        for entry in sys.path:
            found = _file_in(os.path.join(entry or ".", directory), rest, ".pyi")
            if found is not None:
                return found, _source_of(found)
    if not rest:  # a single-file module with its .pyi beside it
        for entry in sys.path:
            single = os.path.join(entry or ".", f"{top}.pyi")
            if os.path.isfile(single):
                return single, "inline"
    return None


def _file_in(base: str, rest: Sequence[str], suffix: str) -> str | None:
    """Module `rest` of the package directory `base`: its ``__init__`` or its own file."""
    target = os.path.join(base, *rest)
    candidates = [os.path.join(target, f"__init__{suffix}")] + ([target + suffix] if rest else [])
    return next((c for c in candidates if os.path.isfile(c)), None)


def _source_file(module: str) -> tuple[str, str] | None:
    """The .py of a module that has no stub (see SOURCE)."""
    top, *rest = module.split(".")
    for entry in sys.path:
        found = _file_in(os.path.join(entry or ".", top), rest, ".py")
        if found is not None:
            return found, SOURCE
    return None


# --- The index --------------------------------------------------------------


class StubIndex:
    """The stubs one description reads, each parsed once.

    `is_known` tells which names the type normalizer knows by name
    (``Optional``, ``ndarray``, ...): those are not resolved further, so an
    alias such as numpy's ``float64`` stays the name the normalizer maps.
    """

    def __init__(self, is_known: Callable[[str], bool]) -> None:
        self._is_known = is_known
        self._modules: dict[str, StubModule | None] = {}
        self._chains: dict[int, list[StubClass]] = {}  # by id() of a StubClass, which its module keeps

    def module(self, name: str) -> StubModule | None:
        """The stub of module `name`, or None when it has none (or it does not parse)."""
        if name not in self._modules:
            self._modules[name] = self._load(name)
        return self._modules[name]

    def _load(self, name: str) -> StubModule | None:
        found = _typeshed_client_stub(name) or _search_path_stub(name) or _source_file(name)
        if found is None:
            return None
        path, source = found
        filename = os.path.basename(path)
        try:
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), filename=filename)
        except (OSError, SyntaxError, ValueError):
            return None
        package = name if filename.startswith("__init__.") else name.rpartition(".")[0]
        return _parse_module(tree, name, source, package)

    def lookup(self, module: str, name: str, depth: int = 0) -> StubFunction | StubClass | None:
        """The function or class `name` of module `module`'s stub, following
        re-exports (``from X import name``, star imports) to where it is defined."""
        m = self.module(module)
        if m is None or depth > MAX_DEPTH:
            return None
        if m.source != SOURCE:
            if name in m.functions:
                return StubFunction(tuple(m.functions[name]), m)
            if name in m.classes:
                return m.classes[name]
            if name in m.variables:
                return self._callable_object(m, m.variables[name])
            if name in m.aliases:  # abs = absolute; float64: TypeAlias = floating[_64Bit]
                found = self._lookup_dotted(m, _dotted(_unsubscripted(m.aliases[name])), depth)
                if found is not None:
                    return found
        if name in m.imports:
            source, original = m.imports[name]
            return self.lookup(source, original, depth + 1)
        for source in m.star_imports:
            found = self.lookup(source, name, depth + 1)
            if found is not None:
                return found
        return None

    def _callable_object(self, module: StubModule, annotation: ast.expr) -> StubFunction | None:
        """The ``__call__`` of the class a stub variable is annotated with
        (``zeros: Final[_ConstructorEmpty]``), or None."""
        node = annotation
        if isinstance(node, ast.Subscript) and _dotted(node.value)[-1:] in (["Final"], ["ClassVar"]):
            node = node.slice
        if isinstance(node, ast.Subscript):
            node = node.value
        cls = self._class_named(module, _dotted(node))
        call = self.method(cls, "__call__") if cls else None
        return StubFunction(call.defs, call.module, bound=True) if call else None

    def _lookup_dotted(self, module: StubModule, parts: Sequence[str], depth: int) -> StubFunction | StubClass | None:
        """What a (dotted) name used in `module` stands for."""
        if not parts:
            return None
        return self.lookup(self._module_of(module, parts[:-1]), parts[-1], depth + 1)

    def _class_named(self, module: StubModule, parts: Sequence[str]) -> StubClass | None:
        """The class a (dotted) name of `module` stands for; a name the stub
        does not define or import is a builtin (``ValueError``)."""
        found = self._lookup_dotted(module, parts, 0)
        if found is None and len(parts) == 1 and module.name != "builtins":
            found = self.lookup("builtins", parts[0])
        return found if isinstance(found, StubClass) else None

    def class_chain(self, cls: StubClass) -> list[StubClass]:
        """`cls` and its stub base classes, nearest first (depth first, each once)."""
        if id(cls) in self._chains:
            return self._chains[id(cls)]
        chain: list[StubClass] = []
        pending = [cls]
        while pending and len(chain) < 4 * MAX_DEPTH:
            current = pending.pop(0)
            if any(c is current for c in chain):
                continue
            chain.append(current)
            pending = [*self._bases(current), *pending]
        self._chains[id(cls)] = chain
        return chain

    def _bases(self, cls: StubClass) -> list[StubClass]:
        found = (self._class_named(cls.module, _dotted(_unsubscripted(b))) for b in cls.bases)
        return [b for b in found if b is not None]

    def method(self, cls: StubClass, name: str) -> StubFunction | None:
        for c in self.class_chain(cls):
            if name in c.methods:
                return StubFunction(tuple(c.methods[name]), c.module)
        return None

    def constructor(self, cls: StubClass) -> StubFunction | None:
        """The ``__init__`` or ``__new__`` of the nearest class that defines either."""
        for c in self.class_chain(cls):
            for name in ("__init__", "__new__"):
                if name in c.methods:
                    return StubFunction(tuple(c.methods[name]), c.module)
        return None

    def property(self, cls: StubClass, name: str) -> tuple[ast.expr | None, StubModule, bool] | None:
        """A property's type annotation, the module it is read in and whether
        it can be set: a ``@property`` or an annotated attribute."""
        for c in self.class_chain(cls):
            if name in c.properties:
                getter, settable = c.properties[name]
                return getter.returns, c.module, settable
            if name in c.attributes:
                annotation = c.attributes[name]
                fixed = _dotted(_unsubscripted(annotation))
                return annotation, c.module, fixed[-1:] not in (["ClassVar"], ["Final"])
        return None

    def read(self, node: ast.expr | None, module: StubModule) -> TypeExpr:
        """The type `node` of stub `module` means, its names resolved."""
        return _type_expr(node, lambda parts: self._resolve(module, parts, 0))

    def _module_of(self, module: StubModule, parts: Sequence[str]) -> str:
        """The module a dotted prefix such as ``np`` or ``os.path`` names in `module`."""
        if not parts:
            return module.name
        first, rest = parts[0], list(parts[1:])
        if first in module.module_names:
            return ".".join([module.module_names[first], *rest])
        if first in module.imports:  # from . import sub
            source, original = module.imports[first]
            return ".".join([source, original, *rest])
        return ".".join(parts)

    def _resolve(self, module: StubModule, parts: Sequence[str], depth: int) -> TypeExpr:
        name = parts[-1]
        if depth > MAX_DEPTH:
            return ANY
        if self._is_known(name):
            return TypeExpr(name)
        if len(parts) > 1:
            target = self.module(self._module_of(module, parts[:-1]))
            return self._resolve(target, [name], depth + 1) if target else TypeExpr(name)
        if name in module.type_vars:
            return ANY
        if name in module.aliases:
            return _type_expr(module.aliases[name], lambda p: self._resolve(module, p, depth + 1))
        if name in module.classes:
            return TypeExpr(name)
        if name in module.imports:
            source, original = module.imports[name]
            target = self.module(source)
            return self._resolve(target, [original], depth + 1) if target else TypeExpr(original)
        for source in module.star_imports:
            target = self.module(source)
            if target and _defines(target, name):
                return self._resolve(target, [name], depth + 1)
        return TypeExpr(name)


def _defines(module: StubModule, name: str) -> bool:
    return any(name in names for names in (module.aliases, module.classes, module.type_vars, module.imports))
