"""The package's modules use each other only through public names.

A private module (``_codec.py``) is a fine thing to import; a private name
inside another module (``_codec._dec``) is not: what a module shares with its
neighbours gets a public name, so each module's underscores mean "mine alone".
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "snakepit_bridge"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / PACKAGE


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "_proto" not in p.relative_to(PACKAGE_DIR).parts)


def _package_of(path: Path) -> list[str]:
    return [PACKAGE, *path.parent.relative_to(PACKAGE_DIR).parts]


def _target(path: Path, node: ast.ImportFrom) -> list[str] | None:
    """The package-relative module an import reads from, as parts; None outside the package."""
    if node.level:
        base = _package_of(path)[: len(_package_of(path)) - (node.level - 1)]
        parts = [*base, *(node.module.split(".") if node.module else [])]
    elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
        parts = node.module.split(".")
    else:
        return None
    return parts


def _is_module(parts: list[str]) -> bool:
    where = PACKAGE_DIR.joinpath(*parts[1:])
    return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(path: Path, text: str | None = None) -> list[str]:
    """Where the module at `path` (its source `text`, read from `path` if None)
    uses a private name of another module of the package."""
    tree = ast.parse(path.read_text() if text is None else text, str(path))
    found: list[str] = []
    # Names bound to modules of the package, e.g. `from . import _codec`.
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            parts = _target(path, node)
            if parts is None:
                continue
            for alias in node.names:
                if _is_module([*parts, alias.name]):
                    modules.add(alias.asname or alias.name)
                elif _private(alias.name):
                    found.append(f"{path.name}:{node.lineno}: imports {alias.name} from {'.'.join(parts)}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + ".") and any(_private(p) for p in alias.name.split(".")[1:-1]):
                    found.append(f"{path.name}:{node.lineno}: imports {alias.name}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and _private(node.attr)
        ):
            found.append(f"{path.name}:{node.lineno}: uses {node.value.id}.{node.attr}")
    return found


def test_no_module_of_the_package_uses_a_private_name_of_another() -> None:
    modules = _modules()
    assert len(modules) > 10
    found = [use for path in modules for use in private_uses(path)]
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_the_check_sees_private_imports() -> None:
    """The check itself: each way of reaching a private name is reported, modules are not."""
    # Parsed as if it lived in the package; nothing is written there.
    probe = PACKAGE_DIR / "_probe_of_the_import_check.py"
    source = (
        "from . import _codec\n"
        "from ._codec import _hidden, decode\n"
        "from .telemetry import __all__\n"
        "x = _codec._other\n"
        "y = _codec.decode\n"
    )
    assert private_uses(probe, source) == [
        f"{probe.name}:2: imports _hidden from {PACKAGE}._codec",
        f"{probe.name}:4: uses _codec._other",
    ]
