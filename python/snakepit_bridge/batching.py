"""Batched tools: concurrent calls of one tool run as one call of it.

``@tool(batch=Batch(max_size=32, max_wait_ms=5))`` asks the host to gather
the calls of a tool that arrive close together (up to ``max_size`` of them,
the first waiting at most ``max_wait_ms`` for the others) and to send them to
one worker as one request. The worker calls the tool once with them all::

    @tool(batch=Batch(max_size=64, max_wait_ms=2))
    def square(self, items: list[dict[str, Any]]) -> list[Any]:
        return [{"x": it["x"] ** 2} for it in items]

``items`` holds one dict of keyword arguments per call, in order; the tool
returns a list (or tuple) of as many results, in the same order. A result
that is an exception instance (:class:`BatchItemError`, or any other) fails
that call alone. With ``Batch(stack=True)`` the tool gets instead one numpy
array per argument, the calls' values stacked along a new leading axis, and
may return an array whose rows (or a dict of arrays or lists whose entries)
are the calls' results. The runner (``_runner.py``) uses the helpers at the
end of this module to build what the tool gets and split what it returns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = ["Batch", "BatchItemError"]

# The largest count or wait the host's BatchSpec (uint32 fields) can carry.
_UINT32_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class Batch:
    """How the host gathers concurrent calls of a tool into one call of it.

    ``max_size``: most calls in one batch (an int, at least 1).
    ``max_wait_ms``: longest the first call of a batch waits for others, in
    milliseconds (at least 0; the host gets it rounded up to a whole
    millisecond). ``stack``: the tool gets a dict of numpy arrays, each
    argument's values stacked along a new leading axis, instead of a list of
    keyword dicts (needs numpy).
    """

    max_size: int = 32
    max_wait_ms: float = 5
    stack: bool = False

    def __post_init__(self) -> None:
        size = self.max_size
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"Batch(max_size=...) must be an int, got {type(size).__name__}")
        if not 1 <= size <= _UINT32_MAX:
            raise ValueError(f"Batch(max_size=...) must be between 1 and {_UINT32_MAX}, got {size}")
        wait = self.max_wait_ms
        if isinstance(wait, bool) or not isinstance(wait, (int, float)):
            raise TypeError(f"Batch(max_wait_ms=...) must be a number of milliseconds, got {type(wait).__name__}")
        if (isinstance(wait, float) and not math.isfinite(wait)) or not 0 <= math.ceil(wait) <= _UINT32_MAX:
            raise ValueError(f"Batch(max_wait_ms=...) must be between 0 and {_UINT32_MAX}, got {wait}")
        if not isinstance(self.stack, bool):
            raise TypeError(f"Batch(stack=...) must be a bool, got {type(self.stack).__name__}")


class BatchItemError(Exception):
    """The failure of one call of a batch, as a batched tool returns it.

    Put at position ``i`` of the returned list, it fails call ``i`` alone (any
    exception instance there does): its caller gets a ``PYTHON_EXCEPTION``
    error whose ``python_type`` is the exception's class name (a subclass's
    own), whose message is ``str(e)`` and whose details hold its ``module``
    and the ``details`` given here.
    """

    def __init__(self, message: str = "", *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        #: Extra details of the caller's error (keys and values as text).
        self.details: dict[str, str] = {str(k): str(v) for k, v in (details or {}).items()}


class BatchResultMismatch(ValueError):
    """What a batched tool returned does not answer its calls one for one
    (the whole batch fails with it)."""


def stack_arguments(np: ModuleType, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The argument of a ``Batch(stack=True)`` tool: for each keyword of the
    calls `items` (all of the same keywords), its values stacked along a new
    leading axis: ``np.stack`` for arrays of one shape and dtype, else
    ``np.asarray`` of the values. Raises ValueError naming the keyword whose
    values do not stack."""
    stacked: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        first = values[0]
        try:
            if isinstance(first, np.ndarray) and all(
                isinstance(v, np.ndarray) and v.shape == first.shape and v.dtype == first.dtype for v in values
            ):
                stacked[key] = np.stack(values)
            else:
                stacked[key] = np.asarray(values)
        except Exception as e:  # ragged lists, arrays of other shapes, objects numpy refuses
            raise ValueError(f"the values of {key!r} do not stack: {type(e).__name__}: {e}") from None
    return stacked


def split_results(name: str, outcome: Any, n: int, np: ModuleType | None) -> list[Any]:
    """The results of `n` calls in what batched tool `name` returned: a list
    or tuple of `n`; with numpy given (``Batch(stack=True)``) also an array
    whose first dimension is `n` (its rows), or a dict of such arrays or of
    lists of `n` (one dict per call). Raises :class:`BatchResultMismatch`."""
    if isinstance(outcome, (list, tuple)):
        if len(outcome) != n:
            raise BatchResultMismatch(f"batched tool {name!r} returned {len(outcome)} results for {n} calls")
        return list(outcome)
    if np is not None:
        if isinstance(outcome, np.ndarray):
            return list(_rows(name, outcome, n, np, ""))
        if isinstance(outcome, dict):
            columns = {k: _rows(name, v, n, np, f" under {k!r}") for k, v in outcome.items()}
            return [{k: col[i] for k, col in columns.items()} for i in range(n)]
        wanted = "a list, an array or a dict of"
    else:
        wanted = "a list of"
    raise BatchResultMismatch(
        f"batched tool {name!r} returned {type(outcome).__name__}, not {wanted} {n} results (one per call)"
    )


def _rows(name: str, column: Any, n: int, np: ModuleType, where: str) -> Sequence[Any]:
    """`column` (an array of at least one dimension, a list or a tuple) as `n` rows."""
    if isinstance(column, np.ndarray) and column.ndim >= 1:
        got = column.shape[0]
    elif isinstance(column, (list, tuple)):
        got = len(column)
    else:
        raise BatchResultMismatch(
            f"batched tool {name!r} returned {type(column).__name__}{where}, not an array or list of {n} results"
        )
    if got != n:
        raise BatchResultMismatch(f"batched tool {name!r} returned {got} results{where} for {n} calls")
    rows: Sequence[Any] = column
    return rows
