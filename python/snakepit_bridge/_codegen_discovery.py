"""Module discovery for the code generator (``codegen``): which modules and
which of their functions and classes a description covers, how they are
imported, and the version it records for them.

A mode (root, exports, public, explicit) or a list of names decides what is
described; finding it means importing a package's submodules (each import's
warnings silenced, a failure kept as the reason it is skipped) and reading
``__all__`` or what a module defines. Kept apart from ``codegen``, which
describes what is found here, so each stays of a readable size; ``codegen``
re-exports ``versions``.
"""

from __future__ import annotations

import importlib
import platform
import re
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Protocol

__all__ = [
    "clean",
    "error",
    "exported",
    "import_root",
    "members",
    "modules",
    "selected",
    "version_of",
    "versions",
]

# --- Text ---------------------------------------------------------------------

# Here because an import that fails is skipped with its error as the reason;
# ``codegen`` writes defaults and signature errors with them too.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_PATH = re.compile(r"(?:[A-Za-z]:)?[\\/](?:[^\s'\"()<>\\/]+[\\/])+([^\s'\"()<>\\/]+)")


def clean(text: str) -> str:
    """`text` without what differs between machines: object addresses, and
    absolute paths (their last component is kept)."""
    return _PATH.sub(r"\1", _ADDRESS.sub("", text))


def error(e: BaseException) -> str:
    return f"{type(e).__name__}: {clean(str(e))}"


# --- Members ------------------------------------------------------------------


def _is_function(obj: object) -> bool:
    """A module-level callable that is not a class (functions, builtins, ufuncs),
    and not a typing construct such as ``list[int]`` or ``Optional``."""
    if isinstance(obj, type) or not callable(obj):
        return False
    return not isinstance(obj, types.GenericAlias) and type(obj).__module__ not in ("typing", "typing_extensions")


def exported(mod: types.ModuleType) -> list[str] | None:
    names = getattr(mod, "__all__", None)
    if names is None:
        return None
    return list(dict.fromkeys(n for n in names if isinstance(n, str)))


def members(mod: types.ModuleType) -> tuple[list[tuple[str, object]], list[tuple[str, type]]]:
    """A module's functions and classes, sorted by name: the names in its
    ``__all__``, else its public names defined in it or its submodules."""
    names = exported(mod)
    prefix = mod.__name__
    if names is None:
        names = [
            n
            for n, obj in vars(mod).items()
            if not n.startswith("_")
            and isinstance(getattr(obj, "__module__", None), str)
            and (obj.__module__ == prefix or obj.__module__.startswith(prefix + "."))
        ]
    functions: list[tuple[str, object]] = []
    classes: list[tuple[str, type]] = []
    for name in sorted(names):
        try:
            obj = getattr(mod, name)
        except Exception:  # a name of __all__ that does not resolve: nothing to wrap
            continue
        if isinstance(obj, type):
            classes.append((name, obj))
        elif _is_function(obj):
            functions.append((name, obj))
    return functions, classes


def _import(name: str) -> types.ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def import_root(name: str) -> types.ModuleType:
    """The module asked for, or an ImportError that says why it is not there."""
    try:
        return _import(name)
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(f"cannot import module {name!r}: {e}", name=name) from e
    except Exception as e:
        raise ImportError(f"cannot import module {name!r}: {error(e)}", name=name) from e


def _submodule_names(root: types.ModuleType, mode: str) -> tuple[list[str], dict[str, BaseException]]:
    """The submodules a mode describes besides the root (sorted), and those
    that already failed to import while being found."""
    failed: dict[str, BaseException] = {}
    if not hasattr(root, "__path__"):
        return [], failed
    prefix = root.__name__ + "."
    if mode == "exports":

        def submodule(n: str) -> bool:
            # An attribute that is its own submodule; a name of __all__ that is no attribute yet may be one.
            if not hasattr(root, n):
                return True
            obj = getattr(root, n)
            return isinstance(obj, types.ModuleType) and obj.__name__ == prefix + n

        candidates = {*vars(root), *(exported(root) or [])}
        return sorted(prefix + n for n in candidates if not n.startswith("_") and submodule(n)), failed
    import pkgutil

    found: list[str] = []

    def walk(path: Sequence[str], package: str) -> None:
        # pkgutil.walk_packages, without importing what is skipped anyway.
        for info in sorted(pkgutil.iter_modules(list(path), package + "."), key=lambda i: i.name):
            last = info.name.rpartition(".")[2]
            if last.startswith("_") or last in ("tests", "testing"):
                continue
            found.append(info.name)
            if info.ispkg:
                try:
                    sub = _import(info.name)
                except Exception as e:
                    failed[info.name] = e
                    continue
                walk(getattr(sub, "__path__", []), info.name)

    walk(root.__path__, root.__name__)
    return sorted(found), failed


# --- Versions -----------------------------------------------------------------


def version_of(module: str) -> tuple[str, bool]:
    """The version a description records for `module`, and whether it is in the stdlib."""
    top = module.partition(".")[0]
    if top in sys.stdlib_module_names:
        return platform.python_version(), True
    package = import_root(top)
    version = getattr(package, "__version__", None)
    if isinstance(version, str):
        return version, False
    from importlib import metadata

    for dist in sorted(metadata.packages_distributions().get(top, [])):
        try:
            return metadata.version(dist), False
        except metadata.PackageNotFoundError:
            continue
    return "unknown", False


def versions(modules: Sequence[str]) -> dict[str, str]:
    """The version of each module, as ``describe`` records it."""
    return {m: version_of(m)[0] for m in modules}

# --- Selection ----------------------------------------------------------------


class _Skips(Protocol):
    """What ``modules`` tells the modules it skips: the description's ``_Describer``."""

    root: str

    def skip(self, module: str, name: str, kind: str, reason: str) -> None: ...


def selected(
    mod: types.ModuleType, functions: Sequence[str] | None, classes: Sequence[str] | None, names: Sequence[str] | None
) -> tuple[list[tuple[str, object]], list[tuple[str, type]]]:
    """The functions and classes named explicitly, in the order given; a name
    that is not there, or not of the kind it was given as, is an error.
    `names` (the Rust builder's ``module:a,B``) go where what they name belongs."""
    picked_functions: list[tuple[str, object]] = []
    picked_classes: list[tuple[str, type]] = []
    for name in names or ():
        obj = _attribute(mod, name, "function or class")
        if isinstance(obj, type):
            picked_classes.append((name, obj))
        elif _is_function(obj):
            picked_functions.append((name, obj))
        else:
            raise TypeError(f"{mod.__name__}.{name} is neither a function nor a class ({type(obj).__name__})")
    for name in functions or ():
        obj = _attribute(mod, name, "function")
        if isinstance(obj, type):
            raise TypeError(f"{mod.__name__}.{name} is a class, not a function: ask for it under classes")
        if not _is_function(obj):
            raise TypeError(f"{mod.__name__}.{name} is not a function ({type(obj).__name__})")
        picked_functions.append((name, obj))
    for name in classes or ():
        obj = _attribute(mod, name, "class")
        if not isinstance(obj, type):
            raise TypeError(f"{mod.__name__}.{name} is not a class ({type(obj).__name__})")
        picked_classes.append((name, obj))
    return picked_functions, picked_classes


def _attribute(mod: types.ModuleType, name: str, what: str) -> object:
    try:
        return getattr(mod, name)
    except AttributeError:
        raise LookupError(f"module {mod.__name__!r} has no {what} {name!r}") from None


def modules(
    d: _Skips, root: types.ModuleType, mode: str, max_modules: int
) -> list[tuple[str, types.ModuleType]]:
    """The modules a mode describes, root first (by the name asked: ``os.path``,
    not ``posixpath``); the others it finds are skipped with the reason."""
    described = [(d.root, root)]
    if mode == "explicit" and exported(root) is None:
        d.skip(d.root, d.root, "module", "no __all__")
    if mode == "root":
        return described
    names, failed = _submodule_names(root, mode)
    for name in names:
        if len(described) >= max_modules:
            d.skip(d.root, name, "module", f"module cap (max_modules={max_modules})")
            continue
        try:
            if name in failed:
                raise failed[name]
            mod = _import(name)
        except Exception as e:
            d.skip(d.root, name, "module", f"import failed: {error(e)}")
            continue
        if mode == "explicit" and exported(mod) is None:
            d.skip(d.root, name, "module", "no __all__")
            continue
        described.append((name, mod))
    return described
