"""A package with inline stubs (``__init__.pyi``, ``_impl.pyi``) for
test_codegen: its runtime code has no annotations, so every type in its
description comes from the stubs."""

from math import log as mlog
from math import log as math_log  # not in this package's stub: math's

from ._impl import Counter, merge, parse

__all__ = ["Counter", "math_log", "merge", "mlog", "parse", "pick", "plain"]


def plain(a, b=2, *rest, flag=False, **extra):
    return [a, b, rest, flag, extra]


def pick(key, default=None):
    return key if default is None else default
