"""``snakepit_bridge.codegen``: the module descriptions ``snakepit gen rust``
turns into Rust wrappers (schema 1, ``docs/codegen.md``).

The stdlib cases read typeshed's stubs (through typeshed_client); numpy's
read the stubs numpy ships. ``codegen_pkg`` (annotated, no stubs) and
``codegen_stubbed`` (inline stubs) are fixture packages next to this file.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from snakepit_bridge.codegen import describe, describe_json, versions

PYTHON_DIR = Path(__file__).resolve().parent.parent
TESTS_DIR = Path(__file__).resolve().parent

ANY = {"kind": "any"}
INT = {"kind": "int"}
FLOAT = {"kind": "float"}
BOOL = {"kind": "bool"}
STR = {"kind": "str"}
NONE = {"kind": "none"}


def optional(inner: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "optional", "inner": inner}


def cls(module: str, name: str) -> dict[str, Any]:
    return {"kind": "class", "module": module, "name": name}


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def params(function: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return by_name(function["params"])


def walk(value: object) -> Iterator[object]:
    """Every value nested in a description."""
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)


def check_schema(d: dict[str, Any]) -> None:
    """What every description holds: the keys in the schema's order, plain
    JSON data, and the type invariants (unions of 2+ without none/any,
    optionals never nesting)."""
    assert list(d) == ["schema", "module", "version", "stdlib", "python", "stubs", "settings", "modules", "skipped"]
    assert d["schema"] == 1 and d["python"] == platform.python_version()
    assert json.loads(json.dumps(d)) == d
    for module in d["modules"]:
        assert list(module) == ["name", "doc", "functions", "classes"]
        if not any(d["settings"].get(k) is not None for k in ("functions", "classes", "names")):
            assert [f["name"] for f in module["functions"]] == sorted(f["name"] for f in module["functions"])
        for c in module["classes"]:
            assert list(c) == ["name", "module", "doc", "init", "methods", "properties"]
            assert [m["name"] for m in c["methods"]] == sorted(m["name"] for m in c["methods"])
            assert [p["name"] for p in c["properties"]] == sorted(p["name"] for p in c["properties"])
            for m in c["methods"]:
                assert m["kind"] in ("instance", "static", "class")
        for f in module["functions"]:
            assert list(f) == ["name", "doc", "params", "returns", "signature", "is_async", "kind"]
            assert f["kind"] == "function"
    for s in d["skipped"]:
        assert list(s) == ["module", "name", "kind", "reason"]
    for value in walk(d):
        if isinstance(value, dict) and value.get("kind") == "union":
            options = value["options"]
            assert len(options) >= 2 and ANY not in options and NONE not in options
            assert all(o["kind"] not in ("union", "optional") for o in options)
            assert all(options.count(o) == 1 for o in options)
        if isinstance(value, dict) and value.get("kind") == "optional":
            assert value["inner"]["kind"] not in ("none", "optional", "any")


@pytest.fixture
def fresh_fixtures() -> Iterator[None]:
    """The fixture packages imported anew: which submodules are attributes of
    a package (what "exports" reads) depends on what was imported before."""

    def drop() -> None:
        for name in [m for m in sys.modules if m.split(".")[0] in ("codegen_pkg", "codegen_stubbed", "codegen_shim")]:
            del sys.modules[name]

    drop()
    yield
    drop()


# --- math ---------------------------------------------------------------------


def test_math_sqrt_floor_gcd() -> None:
    d = describe("math", functions=["sqrt", "gcd", "floor"])
    check_schema(d)
    assert d["module"] == "math" and d["stdlib"] is True and d["version"] == platform.python_version()
    assert d["stubs"] == ["typeshed"]
    assert d["settings"] == {
        "mode": "root",
        "functions": ["sqrt", "gcd", "floor"],
        "classes": None,
        "max_class_methods": None,
        "class_method_scope": "all",
    }
    (module,) = d["modules"]
    # The order given, not sorted.
    assert [f["name"] for f in module["functions"]] == ["sqrt", "gcd", "floor"]
    sqrt, gcd, floor = module["functions"]
    assert sqrt["params"] == [{"name": "x", "kind": "positional_only", "default": None, "type": FLOAT}]
    assert sqrt["returns"] == FLOAT and sqrt["signature"] == "runtime+stub"
    assert sqrt["doc"] and "square root" in sqrt["doc"] and sqrt["is_async"] is False
    assert gcd["params"] == [{"name": "integers", "kind": "var_positional", "default": None, "type": INT}]
    assert gcd["returns"] == INT
    # floor's overloads take a __floor__ protocol or a number and return its _T or an int: any.
    assert floor["params"][0]["kind"] == "positional_only" and floor["returns"] == ANY
    assert d["skipped"] == []


def test_math_root_mode_describes_every_function() -> None:
    d = describe("math")
    check_schema(d)
    (module,) = d["modules"]
    names = [f["name"] for f in module["functions"]]
    assert len(names) > 40 and names == sorted(names)
    assert {"sqrt", "gcd", "log", "isclose", "hypot", "prod"} <= set(names)
    assert module["classes"] == [] and d["skipped"] == []
    functions = by_name(module["functions"])
    # No runtime signature (a C function without one): the stub's.
    assert functions["log"]["signature"] == "stub"
    assert [p["name"] for p in functions["log"]["params"]] == ["x", "base"]
    assert functions["log"]["params"][1]["default"] == "..."
    isclose = params(functions["isclose"])
    assert isclose["rel_tol"] == {"name": "rel_tol", "kind": "keyword_only", "default": "1e-09", "type": FLOAT}
    assert functions["isclose"]["returns"] == BOOL
    assert functions["frexp"]["returns"] == {"kind": "tuple", "items": [FLOAT, INT]}
    assert params(functions["fsum"])["seq"]["type"] == {"kind": "list", "item": FLOAT}


# --- pathlib ------------------------------------------------------------------


def test_pathlib_path_class() -> None:
    d = describe("pathlib", classes=["Path"])
    check_schema(d)
    (module,) = d["modules"]
    assert module["functions"] == []
    (path,) = module["classes"]
    assert path["name"] == "Path" and path["module"] == "pathlib"
    assert path["doc"] and "path" in path["doc"].lower()
    assert path["init"] is not None and path["init"]["signature"] in ("runtime+stub", "stub")
    methods = by_name(path["methods"])
    assert methods["exists"]["returns"] == BOOL and methods["exists"]["kind"] == "instance"
    assert methods["with_suffix"]["params"] == [
        {"name": "suffix", "kind": "positional_or_keyword", "default": None, "type": STR}
    ]
    assert methods["with_suffix"]["returns"] == cls("pathlib", "Path")  # Self
    assert methods["cwd"]["kind"] == "class" and methods["cwd"]["returns"] == cls("pathlib", "Path")
    assert methods["iterdir"]["returns"] == {"kind": "iterator", "item": cls("pathlib", "Path")}
    assert methods["read_text"]["returns"] == STR
    assert params(methods["read_text"])["encoding"]["type"] == optional(STR)
    properties = by_name(path["properties"])
    assert properties["name"] == {"name": "name", "doc": properties["name"]["doc"], "type": STR, "settable": False}
    assert properties["suffix"]["type"] == STR
    assert properties["parent"]["type"] == cls("pathlib", "Path")
    assert properties["parts"]["type"] == {"kind": "list", "item": STR}
    assert "name" not in methods and not any(m.startswith("_") for m in methods)


# --- json ---------------------------------------------------------------------


def test_json_dumps_and_loads() -> None:
    d = describe("json")
    check_schema(d)
    (module,) = d["modules"]
    functions = by_name(module["functions"])
    assert sorted(functions) == ["dump", "dumps", "load", "loads"]
    assert [c["name"] for c in module["classes"]] == ["JSONDecodeError", "JSONDecoder", "JSONEncoder"]
    dumps = params(functions["dumps"])
    assert dumps["obj"] == {"name": "obj", "kind": "positional_or_keyword", "default": None, "type": ANY}
    assert dumps["indent"]["kind"] == "keyword_only" and dumps["indent"]["default"] == "None"
    assert dumps["indent"]["type"] == optional({"kind": "union", "options": [INT, STR]})
    assert dumps["sort_keys"] == {"name": "sort_keys", "kind": "keyword_only", "default": "False", "type": BOOL}
    assert dumps["separators"]["type"] == optional({"kind": "tuple", "items": [STR, STR]})
    assert dumps["default"]["type"] == optional({"kind": "callable"})
    assert functions["dumps"]["returns"] == STR
    loads = params(functions["loads"])
    assert loads["s"]["default"] is None and loads["s"]["type"]["kind"] == "union"
    assert loads["object_hook"]["kind"] == "keyword_only"
    assert functions["loads"]["returns"] == ANY


# --- datetime -----------------------------------------------------------------


def test_datetime_classes() -> None:
    d = describe("datetime")
    check_schema(d)
    (module,) = d["modules"]
    classes = by_name(module["classes"])
    assert {"date", "datetime", "time", "timedelta", "timezone", "tzinfo"} <= set(classes)
    for name in ("date", "datetime"):
        properties = by_name(classes[name]["properties"])
        for field in ("year", "month", "day"):
            assert properties[field]["type"] == INT and properties[field]["settable"] is False
        methods = by_name(classes[name]["methods"])
        assert methods["isoformat"]["returns"] == STR
        assert methods["today"]["kind"] == "class" and methods["today"]["returns"] == cls("datetime", name)
    date_init = classes["date"]["init"]
    assert [p["name"] for p in date_init["params"]] == ["year", "month", "day"]
    assert all(p["type"] == INT for p in date_init["params"])
    datetime_init = params(classes["datetime"]["init"])
    assert datetime_init["tzinfo"]["type"] == optional(cls("datetime", "tzinfo"))
    timedelta = classes["timedelta"]
    assert by_name(timedelta["properties"])["days"]["type"] == INT
    assert by_name(timedelta["methods"])["total_seconds"]["returns"] == FLOAT
    assert {p["name"] for p in timedelta["init"]["params"]} >= {"days", "seconds", "weeks"}
    assert by_name(classes["datetime"]["methods"])["date"]["returns"] == cls("datetime", "date")


# --- numpy --------------------------------------------------------------------


def test_numpy_mean_std_array() -> None:
    np = pytest.importorskip("numpy")
    d = describe("numpy", functions=["mean", "std", "array", "sqrt"])
    check_schema(d)
    assert d["version"] == np.__version__ and d["stdlib"] is False and "inline" in d["stubs"]
    mean, std, array, sqrt = d["modules"][0]["functions"]
    assert [p["name"] for p in mean["params"]] == ["a", "axis", "dtype", "out", "keepdims", "where"]
    assert mean["signature"] == "runtime+stub"
    m = params(mean)
    assert m["a"]["default"] is None and m["a"]["type"] == ANY
    assert m["axis"]["default"] == "None" and m["axis"]["type"]["kind"] in ("optional", "any")
    assert m["where"]["kind"] == "keyword_only"
    assert m["keepdims"]["kind"] == "positional_or_keyword"
    assert {"ddof", "keepdims", "where", "mean", "correction"} <= set(params(std))
    assert params(std)["ddof"]["default"] == "0"
    # np.array has no runtime signature: the stub's, overloads merged.
    assert array["signature"] == "stub"
    a = params(array)
    assert a["object"]["default"] is None and a["object"]["kind"] == "positional_or_keyword"
    assert a["dtype"]["default"] == "..."
    assert all(a[n]["kind"] == "keyword_only" for n in ("copy", "order", "subok", "ndmin", "like"))
    assert a["ndmin"]["type"] == INT
    # A ufunc: the __call__ of the class its stub annotates it with.
    assert sqrt["signature"] == "stub" and sqrt["params"][0]["kind"] == "positional_only"


def test_numpy_types_from_stubs() -> None:
    pytest.importorskip("numpy")
    d = describe("numpy", functions=["zeros", "linspace", "sum"], classes=["ndarray"])
    check_schema(d)
    zeros, linspace, total = d["modules"][0]["functions"]
    assert zeros["returns"] == {"kind": "ndarray"} and zeros["params"][0]["name"] == "shape"
    assert params(linspace)["num"]["type"] == INT and params(linspace)["endpoint"]["type"] == BOOL
    assert params(total)["keepdims"]["type"] == BOOL  # numpy's "no value" sentinel is dropped
    (ndarray,) = d["modules"][0]["classes"]
    methods = by_name(ndarray["methods"])
    assert "reshape" in methods and "tolist" in methods
    assert by_name(ndarray["properties"])["ndim"]["type"] == INT


# --- Stubs: inline, conditions, aliases, re-exports, overloads ------------------------


def test_inline_stubs(fresh_fixtures: None) -> None:
    d = describe("codegen_stubbed")
    check_schema(d)
    assert "inline" in d["stubs"] and d["version"] == "unknown" and d["stdlib"] is False
    (module,) = d["modules"]
    functions = by_name(module["functions"])
    # sys.version_info/sys.platform branches taken for this interpreter; aliases resolved.
    assert functions["mlog"]["signature"] == "stub"
    assert [(p["name"], p["type"]) for p in functions["mlog"]["params"]] == [("x", FLOAT), ("base", FLOAT)]
    plain = functions["plain"]
    assert plain["signature"] == "runtime+stub" and plain["returns"] == {"kind": "list", "item": INT}
    assert plain["params"] == [
        {"name": "a", "kind": "positional_or_keyword", "default": None, "type": optional(FLOAT)},
        {"name": "b", "kind": "positional_or_keyword", "default": "2", "type": INT},
        {"name": "rest", "kind": "var_positional", "default": None, "type": STR},
        {"name": "flag", "kind": "keyword_only", "default": "False", "type": BOOL},
        {"name": "extra", "kind": "var_keyword", "default": None, "type": FLOAT},
    ]
    # Overloads: a parameter whose types differ without collapsing is any; the returns are joined.
    pick = functions["pick"]
    assert params(pick)["key"]["type"] == ANY and params(pick)["default"]["type"] == NONE
    assert pick["returns"] == optional({"kind": "union", "options": [INT, STR]})
    # Not in the package's stub: math's, where the function says it is from.
    assert functions["math_log"]["signature"] == "stub" and "typeshed" in d["stubs"]
    assert [p["name"] for p in functions["math_log"]["params"]] == ["x", "base"]
    # Re-exported from _impl.pyi (named, and through a star import).
    assert functions["merge"]["params"][1]["type"] == {"kind": "dict", "key": STR, "value": INT}
    assert functions["parse"]["returns"] == {"kind": "list", "item": INT}
    (counter,) = module["classes"]
    assert counter["init"] == {
        "params": [{"name": "start", "kind": "positional_or_keyword", "default": "0", "type": INT}],
        "doc": None,
        "signature": "runtime+stub",
    }
    assert counter["doc"] == "Counts."
    methods = by_name(counter["methods"])
    assert methods["bump"]["returns"] == cls("codegen_stubbed", "Counter")
    assert methods["make"]["kind"] == "class" and methods["make"]["params"] == []
    assert by_name(counter["properties"])["label"]["type"] == STR
    assert by_name(counter["properties"])["label"]["settable"] is True


def test_a_c_function_without_signature_or_stub_is_skipped() -> None:
    d = describe("_functools", functions=["reduce"])
    assert d["modules"][0]["functions"] == []
    assert d["skipped"] == [
        {
            "module": "_functools",
            "name": "reduce",
            "kind": "function",
            "reason": "no signature: C function without text signature",
        }
    ]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="PEP 695 aliases need Python 3.12")
def test_pep_695_aliases(fresh_fixtures: None) -> None:
    d = describe("codegen_stubbed.modern")
    (pair,) = d["modules"][0]["functions"]
    assert pair["signature"] == "runtime+stub"
    assert params(pair)["second"]["type"] == {"kind": "union", "options": [INT, STR]}
    assert pair["returns"] == {"kind": "tuple", "items": [INT, INT]}


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.11 cannot parse PEP 695")
def test_a_stub_that_does_not_parse_is_no_stub(fresh_fixtures: None) -> None:
    d = describe("codegen_stubbed.modern")
    (pair,) = d["modules"][0]["functions"]
    assert pair["signature"] == "runtime" and pair["returns"] == ANY and d["stubs"] == []


# --- Runtime annotations, and the modes on a fixture package ------------------------


def test_runtime_annotations(fresh_fixtures: None) -> None:
    d = describe("codegen_pkg")
    check_schema(d)
    assert d["stubs"] == []
    (module,) = d["modules"]
    assert module["doc"] and module["doc"].startswith("A small package")
    functions = by_name(module["functions"])
    assert sorted(functions) == ["count_up", "fetch", "scale", "top_function"]
    top = functions["top_function"]
    assert top["signature"] == "runtime" and top["returns"] == FLOAT and top["doc"] == "Adds two numbers."
    assert top["params"] == [
        {"name": "x", "kind": "positional_or_keyword", "default": None, "type": INT},
        {"name": "y", "kind": "positional_or_keyword", "default": "1.5", "type": FLOAT},
        {"name": "label", "kind": "keyword_only", "default": "None", "type": optional(STR)},
    ]
    shape = cls("codegen_pkg", "Shape")
    scale = params(functions["scale"])
    assert scale["shapes"]["type"] == {"kind": "list", "item": shape}
    assert scale["factor"]["type"] == FLOAT  # float | int
    assert functions["scale"]["returns"] == {"kind": "dict", "key": STR, "value": shape}
    assert functions["count_up"]["returns"] == {"kind": "iterator", "item": INT}
    fetch = functions["fetch"]
    assert fetch["is_async"] is True and fetch["returns"] == optional({"kind": "bytes"})
    assert [p["kind"] for p in fetch["params"]] == ["positional_or_keyword", "var_positional", "var_keyword"]
    (shape_class,) = module["classes"]
    assert shape_class["doc"] == "A rectangle."
    assert shape_class["init"] == {
        "params": [
            {"name": "width", "kind": "positional_or_keyword", "default": None, "type": FLOAT},
            {"name": "height", "kind": "positional_or_keyword", "default": "1.0", "type": FLOAT},
        ],
        "doc": "Make a shape.",
        "signature": "runtime",
    }
    methods = by_name(shape_class["methods"])
    assert {n: m["kind"] for n, m in methods.items()} == {"ratio": "static", "scaled": "instance", "unit": "class"}
    assert methods["scaled"]["params"] == [
        {"name": "factor", "kind": "positional_or_keyword", "default": None, "type": FLOAT}
    ]
    assert methods["scaled"]["returns"] == shape and methods["unit"]["params"] == []
    assert [p["name"] for p in methods["ratio"]["params"]] == ["a", "b"]
    assert shape_class["properties"] == [
        {"name": "area", "doc": "width times height", "type": FLOAT, "settable": False},
        {"name": "name", "doc": None, "type": STR, "settable": True},
    ]


def test_unions_are_flattened(fresh_fixtures: None) -> None:
    d = describe("codegen_pkg.shapes", functions=["nested"])
    check_schema(d)
    (nested,) = d["modules"][0]["functions"]
    value, flags = nested["params"]
    assert value["type"] == optional({"kind": "union", "options": [INT, {"kind": "list", "item": INT}, STR]})
    assert value["default"] == "'x'"
    assert flags["type"] == {"kind": "union", "options": [STR, BOOL]}  # a Literal is the type of its values
    assert nested["returns"] == optional(INT)  # int | bool is an int


def module_names(d: dict[str, Any]) -> list[str]:
    return [m["name"] for m in d["modules"]]


def skipped_modules(d: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["reason"] for s in d["skipped"] if s["kind"] == "module"}


def test_root_mode_uses_all_or_the_names_defined_in_the_module(fresh_fixtures: None) -> None:
    d = describe("codegen_pkg.beta")
    (module,) = d["modules"]
    # No __all__: json and os.path.join, imported, are not its members.
    assert [f["name"] for f in module["functions"]] == ["beta_function"]
    beta = params(module["functions"][0])
    assert beta["values"]["type"] == {"kind": "list", "item": INT}
    assert beta["pair"]["type"] == {"kind": "tuple", "items": [STR, {"kind": "bytes"}]}
    assert module["functions"][0]["returns"] == {"kind": "set", "item": STR}
    alpha = describe("codegen_pkg.alpha")["modules"][0]
    assert [f["name"] for f in alpha["functions"]] == ["area"]  # its __all__


def test_exports_mode(fresh_fixtures: None) -> None:
    d = describe("codegen_pkg", mode="exports")
    check_schema(d)
    # alpha is an attribute, beta only named in __all__, shapes an attribute (imported by __init__).
    assert module_names(d) == ["codegen_pkg", "codegen_pkg.alpha", "codegen_pkg.beta", "codegen_pkg.shapes"]
    assert d["skipped"] == [] and d["settings"]["mode"] == "exports"


def test_public_mode(fresh_fixtures: None) -> None:
    d = describe("codegen_pkg", mode="public")
    check_schema(d)
    assert module_names(d) == [
        "codegen_pkg",
        "codegen_pkg.alpha",
        "codegen_pkg.beta",
        "codegen_pkg.shapes",
        "codegen_pkg.sub",
        "codegen_pkg.sub.deep",
        "codegen_pkg.wide",
    ]
    assert skipped_modules(d) == {"codegen_pkg.broken": "import failed: RuntimeError: broken on purpose"}
    assert d["skipped"][0]["module"] == "codegen_pkg"
    # _private and tests were never imported (they raise if they are).
    assert "codegen_pkg._private" not in sys.modules and "codegen_pkg.tests" not in sys.modules
    modules = by_name(d["modules"])
    assert [f["name"] for f in modules["codegen_pkg.alpha"]["functions"]] == ["area"]
    assert [f["name"] for f in modules["codegen_pkg.sub.deep"]["functions"]] == ["deep_function"]
    # A class described in two modules is referred to through the first.
    (shape,) = modules["codegen_pkg.shapes"]["classes"]
    assert shape["module"] == "codegen_pkg.shapes"
    assert by_name(shape["methods"])["scaled"]["returns"] == cls("codegen_pkg", "Shape")


def test_a_deprecated_shim_module_is_skipped_and_nothing_warns(fresh_fixtures: None) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = describe("codegen_shim", mode="public")
    check_schema(d)
    assert module_names(d) == ["codegen_shim"]
    assert skipped_modules(d) == {"codegen_shim.old": "deprecated: codegen_shim.old is deprecated: use codegen_shim"}
    assert [f["name"] for f in d["modules"][0]["functions"]] == ["moved"]
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)], [str(w.message) for w in caught]


def test_public_mode_module_cap(fresh_fixtures: None) -> None:
    d = describe("codegen_pkg", mode="public", max_modules=2)
    assert module_names(d) == ["codegen_pkg", "codegen_pkg.alpha"]
    cap = "module cap (max_modules=2)"
    assert skipped_modules(d) == {
        name: cap
        for name in (
            "codegen_pkg.beta",
            "codegen_pkg.broken",
            "codegen_pkg.shapes",
            "codegen_pkg.sub",
            "codegen_pkg.sub.deep",
            "codegen_pkg.wide",
        )
    }


def test_explicit_mode(fresh_fixtures: None) -> None:
    d = describe("codegen_pkg", mode="explicit")
    check_schema(d)
    assert module_names(d) == ["codegen_pkg", "codegen_pkg.alpha", "codegen_pkg.sub", "codegen_pkg.wide"]
    assert skipped_modules(d) == {
        "codegen_pkg.beta": "no __all__",
        "codegen_pkg.broken": "import failed: RuntimeError: broken on purpose",
        "codegen_pkg.shapes": "no __all__",
        "codegen_pkg.sub.deep": "no __all__",
    }
    alpha = by_name(d["modules"])["codegen_pkg.alpha"]
    assert [f["name"] for f in alpha["functions"]] == ["area"]  # not not_exported


def test_explicit_mode_on_a_module_without_all(fresh_fixtures: None) -> None:
    d = describe("codegen_pkg.beta", mode="explicit")
    assert d["modules"] == [
        {
            "name": "codegen_pkg.beta",
            "doc": "No __all__: its public names defined here.",
            "functions": [],
            "classes": [],
        }
    ]
    assert skipped_modules(d) == {"codegen_pkg.beta": "no __all__"}


# --- The method cap -----------------------------------------------------------------


def wide(**kwargs: Any) -> tuple[dict[str, Any], list[dict[str, str]]]:
    d = describe("codegen_pkg.wide", classes=["Wide"], **kwargs)
    check_schema(d)
    (c,) = d["modules"][0]["classes"]
    return c, d["skipped"]


def test_all_methods_through_the_mro(fresh_fixtures: None) -> None:
    c, skipped = wide()
    assert [m["name"] for m in c["methods"]] == sorted(
        ["b_one", "b_two", "b_three", "b_four", "b_five", "w_one", "w_two", "w_three", "w_four"]
    )
    assert [p["name"] for p in c["properties"]] == ["size"] and skipped == []
    c, _ = wide(class_method_scope="defined")
    assert [m["name"] for m in c["methods"]] == ["w_four", "w_one", "w_three", "w_two"]


def test_method_cap_falls_back_to_the_methods_declared_on_the_class(fresh_fixtures: None) -> None:
    c, skipped = wide(max_class_methods=6)
    assert [m["name"] for m in c["methods"]] == ["w_four", "w_one", "w_three", "w_two"]
    reason = "too many methods (9 > max_class_methods=6): kept the methods declared on the class itself"
    assert skipped == [
        {"module": "codegen_pkg.wide", "name": f"Wide.{n}", "kind": "method", "reason": reason}
        for n in ("b_five", "b_four", "b_one", "b_three", "b_two")
    ]
    assert [p["name"] for p in c["properties"]] == ["size"]  # properties are not capped


def test_method_cap_keeps_the_first_declared_by_name(fresh_fixtures: None) -> None:
    c, skipped = wide(max_class_methods=2)
    assert [m["name"] for m in c["methods"]] == ["w_four", "w_one"]
    assert {s["name"] for s in skipped} == {
        "Wide.b_five",
        "Wide.b_four",
        "Wide.b_one",
        "Wide.b_three",
        "Wide.b_two",
        "Wide.w_three",
        "Wide.w_two",
    }
    assert {s["reason"] for s in skipped} == {
        "too many methods (9 > max_class_methods=2): kept the first 2 by name of the 4 declared on the class itself"
    }


# --- Names without a kind (the Rust builder's module:a,B) ------------------------------


def test_names_are_described_by_what_they_are() -> None:
    d = describe("json", names=["loads", "JSONEncoder", "dumps"])
    check_schema(d)
    (module,) = d["modules"]
    assert [f["name"] for f in module["functions"]] == ["loads", "dumps"]
    assert [c["name"] for c in module["classes"]] == ["JSONEncoder"]
    # The schema's settings, and the names last.
    assert list(d["settings"]) == ["mode", "functions", "classes", "max_class_methods", "class_method_scope", "names"]
    assert d["settings"]["names"] == ["loads", "JSONEncoder", "dumps"]
    assert "names" not in describe("json", functions=["loads"])["settings"]
    with pytest.raises(LookupError, match="nope"):
        describe("json", names=["nope"])
    with pytest.raises(TypeError, match="neither a function nor a class"):
        describe("math", names=["pi"])


# --- Without typeshed_client (and numpy) ---------------------------------------------


def test_without_typeshed_client_or_numpy(tmp_path: Path) -> None:
    """Both fail to import here: codegen still imports and describes, with the
    stubs it finds on sys.path (inline ones) and runtime signatures otherwise."""
    for name in ("typeshed_client", "numpy"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f'raise ImportError("No module named {name!r}")\n')
    script = (
        "import json, sys\n"
        "from snakepit_bridge import codegen\n"
        "found = [codegen.describe('math', functions=['sqrt'])]\n"
        "found.append(codegen.describe('codegen_stubbed', functions=['plain']))\n"
        "print(json.dumps(found))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(PYTHON_DIR), str(TESTS_DIR)])}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    math, stubbed = json.loads(out.stdout)
    assert math["stubs"] == [] and math["skipped"] == []
    (sqrt,) = math["modules"][0]["functions"]
    assert sqrt["signature"] == "runtime" and sqrt["params"][0]["type"] == ANY
    assert stubbed["stubs"] == ["inline"]
    (plain,) = stubbed["modules"][0]["functions"]
    assert plain["signature"] == "runtime+stub" and plain["returns"] == {"kind": "list", "item": INT}


# --- Errors -------------------------------------------------------------------------


def test_unknown_module() -> None:
    with pytest.raises(ModuleNotFoundError, match="no_such_module_anywhere"):
        describe("no_such_module_anywhere")


def test_unknown_names_and_kinds() -> None:
    with pytest.raises(LookupError, match="no_such_function"):
        describe("math", functions=["sqrt", "no_such_function"])
    with pytest.raises(LookupError, match="NoSuchClass"):
        describe("pathlib", classes=["NoSuchClass"])
    with pytest.raises(TypeError, match="is a class"):
        describe("pathlib", functions=["Path"])
    with pytest.raises(TypeError, match="not a class"):
        describe("math", classes=["sqrt"])
    with pytest.raises(TypeError, match="not a function"):
        describe("math", functions=["pi"])


def test_unknown_settings() -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        describe("math", mode="everything")
    with pytest.raises(ValueError, match="class_method_scope"):
        describe("math", class_method_scope="some")


def test_a_module_that_fails_to_import(fresh_fixtures: None) -> None:
    with pytest.raises(ImportError, match="RuntimeError: broken on purpose"):
        describe("codegen_pkg.broken")


# --- Versions -----------------------------------------------------------------------


def test_versions() -> None:
    np = pytest.importorskip("numpy")
    assert versions(["math", "numpy"]) == {"math": platform.python_version(), "numpy": np.__version__}
    # No __version__: the version of the distribution that provides it.
    assert versions(["iniconfig"]) == {"iniconfig": importlib.metadata.version("iniconfig")}


def test_versions_unknown(fresh_fixtures: None) -> None:
    assert versions(["codegen_pkg.alpha"]) == {"codegen_pkg.alpha": "unknown"}


# --- Command line -------------------------------------------------------------------


def codegen(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PYTHON_DIR), str(TESTS_DIR)])}
    return subprocess.run(
        [sys.executable, "-m", "snakepit_bridge.codegen", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_describe() -> None:
    out = codegen("describe", "math", "--functions", "sqrt")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d == describe("math", functions=["sqrt"])
    assert [f["name"] for f in d["modules"][0]["functions"]] == ["sqrt"]


def test_cli_describe_options() -> None:
    out = codegen("describe", "codegen_pkg.wide", "--classes", "Wide", "--max-class-methods", "6")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["settings"]["max_class_methods"] == 6 and len(d["skipped"]) == 5
    out = codegen("describe", "codegen_pkg", "--mode", "public", "--class-method-scope", "defined")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["settings"]["class_method_scope"] == "defined"


def test_describe_json_is_the_description_as_text() -> None:
    # What a worker answers `snakepit gen rust` with: one string, however
    # deep the description nests.
    assert json.loads(describe_json("json", names=["dumps"])) == describe("json", names=["dumps"])


def test_cli_names() -> None:
    out = codegen("describe", "json", "--names", "dumps,JSONEncoder")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == describe("json", names=["dumps", "JSONEncoder"])


def test_cli_versions() -> None:
    out = codegen("versions", "math", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"math": platform.python_version(), "json": platform.python_version()}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["describe", "no_such_module_anywhere"], "no_such_module_anywhere"),
        (["describe", "math", "--mode", "everything"], "unknown mode"),
        (["describe", "math", "--functions", "nope"], "nope"),
        (["versions", "no_such_module_anywhere"], "no_such_module_anywhere"),
    ],
)
def test_cli_errors(args: list[str], message: str) -> None:
    out = codegen(*args)
    assert out.returncode == 1 and out.stdout == ""
    assert message in out.stderr and "Traceback" not in out.stderr
