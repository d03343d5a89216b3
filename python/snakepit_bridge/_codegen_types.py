"""The description's types (schema 1), for the code generator (``codegen``):
what a parameter or return annotation means, normalized to the few kinds the
schema has (int, list, optional, a class described, any, ...).

Annotations come from two places: the module's stubs, read by ``_stubs`` into
``TypeExpr`` trees, and the running objects (``inspect.signature``), turned
into the same trees by ``annotation_expr``. Both spell one meaning many ways
(``List[int]``, ``list[int]``, ``Sequence[SupportsIndex]``; numpy's scalar
aliases; unions with ``None`` or numpy's sentinel), so ``Types`` maps each to
one type of the schema here, and what the Rust side receives does not depend
on where a type was found.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Sequence
from typing import Any

from ._stubs import ANY, LITERAL, TypeExpr, parse_type

__all__ = ["Type", "Types", "annotation_expr", "is_known", "merge_overloads", "of_kind", "union"]

Type = dict[str, Any]

# Names whose meaning is fixed: builtins, typing's and numpy's.
_SIMPLE: dict[str, str] = {
    "int": "int",
    "float": "float",
    "bool": "bool",
    "str": "str",
    "bytes": "bytes",
    "bytearray": "bytes",
    "complex": "complex",
    "None": "none",
    "NoneType": "none",
    "object": "any",
    "Any": "any",
    "Never": "any",
    "NoReturn": "any",
    "type": "any",
    "Type": "any",
    "SupportsFloat": "float",
    "SupportsIndex": "int",
    "SupportsInt": "int",
    "SupportsComplex": "complex",
    "LiteralString": "str",
    "TypeGuard": "bool",
    "TypeIs": "bool",
    "Callable": "callable",
    "PathLike": "any",
    "ArrayLike": "any",
    "DTypeLike": "any",
    # numpy's "argument not given" sentinel; dropped from unions.
    "_NoValueType": "any",
    "ndarray": "ndarray",
    "NDArray": "ndarray",
    **dict.fromkeys(("floating", "float64", "float32", "float16", "double", "single", "half", "longdouble"), "float"),
    **dict.fromkeys(
        ("integer", "signedinteger", "unsignedinteger", "int_", "intp", "uintp", "uint")
        + tuple(f"{s}int{n}" for s in ("", "u") for n in (8, 16, 32, 64)),
        "int",
    ),
    **dict.fromkeys(("complexfloating", "complex64", "complex128", "csingle", "cdouble"), "complex"),
    "bool_": "bool",
    "str_": "str",
    "bytes_": "bytes",
}
_LISTS = frozenset({"list", "List", "Sequence", "MutableSequence", "Collection", "deque", "Deque"})
_DICTS = frozenset({"dict", "Dict", "Mapping", "MutableMapping", "OrderedDict", "defaultdict", "DefaultDict"})
_SETS = frozenset({"set", "Set", "frozenset", "FrozenSet", "AbstractSet", "MutableSet"})
_ITERATORS = frozenset({"Iterator", "Generator"})
# Qualifiers that stand for their first argument.
_WRAPPERS = frozenset({"Annotated", "Final", "ClassVar", "Required", "NotRequired", "ReadOnly"})
_FORMS = frozenset({"Optional", "Union", "Literal", "tuple", "Tuple", "Iterable", "Self"})
# Modules whose classes a runtime annotation names by their meaning (list,
# Sequence, ndarray); a class of any other module is a class of the module
# being described, or any.
_KNOWN_MODULES = frozenset({"builtins", "typing", "typing_extensions", "collections", "_collections_abc", "abc"})
_KNOWN_MODULES |= {"os", "types", "numpy", "_typeshed"}
_NUMBERS = ("bool", "int", "float")
_NO_VALUE = "_NoValueType"


def is_known(name: str) -> bool:
    """Whether `name` has a fixed meaning (stub aliases are not followed past it)."""
    return (
        name in _SIMPLE
        or name in _FORMS
        or name in _WRAPPERS
        or any(name in names for names in (_LISTS, _DICTS, _SETS, _ITERATORS))
        or name.startswith("_ArrayLike")
    )


def of_kind(kind: str) -> Type:
    return {"kind": kind}


def union(types_: Sequence[Type]) -> Type:
    """One type for `types_`: duplicates dropped, any absorbing everything,
    None made optional, numbers merged (float > int > bool)."""
    flat: list[Type] = []
    pending = list(types_)
    while pending:
        t = pending.pop(0)
        if t["kind"] == "union":
            pending[:0] = t["options"]
        elif t["kind"] == "optional":
            pending[:0] = [t["inner"], of_kind("none")]
        else:
            flat.append(t)
    if not flat or any(t["kind"] == "any" for t in flat):
        return of_kind("any")
    has_none = any(t["kind"] == "none" for t in flat)
    options: list[Type] = []
    for t in flat:
        if t not in options and t["kind"] != "none":
            options.append(t)
    numbers = [t["kind"] for t in options if t["kind"] in _NUMBERS]
    if len(numbers) > 1:
        merged = of_kind(max(numbers, key=_NUMBERS.index))
        first = next(i for i, t in enumerate(options) if t["kind"] in _NUMBERS)
        options = [t for t in options if t["kind"] not in _NUMBERS]
        options.insert(first, merged)
    if not options:
        return of_kind("none")
    core = options[0] if len(options) == 1 else {"kind": "union", "options": options}
    return {"kind": "optional", "inner": core} if has_none else core


def merge_overloads(types_: Sequence[Type]) -> Type:
    """A parameter's type across overloads: their union when it collapses
    (to one type, or to one overload's own type), else any."""
    distinct: list[Type] = []
    for t in types_:
        if t not in distinct:
            distinct.append(t)
    merged = union(distinct)
    spread = merged["kind"] == "union" or (merged["kind"] == "optional" and merged["inner"]["kind"] == "union")
    return merged if merged in distinct or not spread else of_kind("any")


def _literal_type(e: TypeExpr) -> Type:
    if e.name != LITERAL:
        return of_kind("any")
    value = e.value
    for py in (bool, int, float, complex, str, bytes):  # bool before int: True is an int too
        if isinstance(value, py):
            return of_kind(py.__name__)
    return of_kind("none") if value is None else of_kind("any")


class Types:
    """Turns ``TypeExpr``s into the description's types. Knows the classes
    being described, so a name of one becomes a class reference."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[object, Type]] = {}
        self._by_name: dict[str, Type] = {}

    def add_class(self, cls: type, module: str, name: str) -> None:
        """Registers `cls`, reachable as `module.name`; the first place a class is found is its reference."""
        ref = {"kind": "class", "module": module, "name": name}
        self._by_id.setdefault(id(cls), (cls, ref))
        self._by_name.setdefault(name, ref)

    def _class(self, e: TypeExpr) -> Type:
        if e.obj is not None:
            found = self._by_id.get(id(e.obj))
            return dict(found[1]) if found else of_kind("any")
        ref = self._by_name.get(e.name)
        return dict(ref) if ref else of_kind("any")

    def normalize(self, e: TypeExpr, owner: Type | None, output: bool) -> Type:
        """The type `e` means; `owner` is what Self means, `output` whether it
        is returned (an Iterable returned is an iterator, one taken a list)."""
        if e.obj is not None and str(getattr(e.obj, "__module__", "")).partition(".")[0] not in _KNOWN_MODULES:
            return self._class(e)
        args = e.args or ()

        def sub(i: int) -> Type:
            return self.normalize(args[i], owner, output) if len(args) > i else of_kind("any")

        name = e.name
        if name == "Union":
            kept = [a for a in args if a.name != _NO_VALUE]
            return union([self.normalize(a, owner, output) for a in kept])
        if name == "Optional":
            return union([sub(0), of_kind("none")])
        if name == "Literal":
            return union([_literal_type(a) for a in args])
        if name in _WRAPPERS:
            return sub(0)
        if name in ("tuple", "Tuple"):
            if e.args is None:
                return {"kind": "list", "item": of_kind("any")}
            if len(args) == 2 and args[1].name == "...":
                return {"kind": "list", "item": sub(0)}
            return {"kind": "tuple", "items": [self.normalize(a, owner, output) for a in args]}
        if name == "Iterable":
            return {"kind": "iterator" if output else "list", "item": sub(0)}
        if name in _LISTS:
            return {"kind": "list", "item": sub(0)}
        if name in _SETS:
            return {"kind": "set", "item": sub(0)}
        if name in _DICTS:
            return {"kind": "dict", "key": sub(0), "value": sub(1)}
        if name in _ITERATORS:
            return {"kind": "iterator", "item": sub(0)}
        if name == "Self":
            return dict(owner) if owner else of_kind("any")
        if name in _SIMPLE:
            return of_kind(_SIMPLE[name])
        if name.startswith("_ArrayLike"):
            return of_kind("any")
        return self._class(e)


def annotation_expr(obj: object) -> TypeExpr:
    """A runtime annotation as a ``TypeExpr`` (strings are parsed, their names taken as written)."""
    if obj is inspect.Parameter.empty:
        return ANY
    if obj is None or obj is type(None):
        return TypeExpr("None")
    if obj is Ellipsis:
        return TypeExpr("...")
    if isinstance(obj, str | typing.ForwardRef):
        text = obj if isinstance(obj, str) else obj.__forward_arg__
        return parse_type(text, lambda parts: TypeExpr(parts[-1]))
    if isinstance(obj, typing.TypeVar | typing.ParamSpec | typing.TypeVarTuple | list):
        return ANY
    origin = typing.get_origin(obj)
    if origin is None:
        return TypeExpr(_name_of(obj), obj=obj if isinstance(obj, type) else None)
    args = typing.get_args(obj)
    if origin is typing.Literal:
        return TypeExpr("Literal", tuple(TypeExpr(LITERAL, value=a) for a in args))
    if origin is typing.Annotated:
        return annotation_expr(args[0])
    name = "Union" if origin is typing.Union or origin is types.UnionType else _name_of(origin)
    return TypeExpr(name, tuple(annotation_expr(a) for a in args), obj=origin if isinstance(origin, type) else None)


def _name_of(obj: object) -> str:
    name = getattr(obj, "__name__", None) or getattr(obj, "_name", None)
    return name if isinstance(name, str) else "Any"
