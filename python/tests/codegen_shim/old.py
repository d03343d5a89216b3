"""The shim: every name it is asked for warns, and comes from the package."""

from __future__ import annotations

import warnings
from typing import Any

import codegen_shim

__all__ = ["moved"]


def __getattr__(name: str) -> Any:
    warnings.warn("codegen_shim.old is deprecated: use codegen_shim", DeprecationWarning, stacklevel=2)
    return getattr(codegen_shim, name)
