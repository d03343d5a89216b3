"""Adapter for tests/test_shm.py: arrays and bytes in shared memory."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from snakepit_bridge import Batch, zero_copy
from snakepit_bridge.base_adapter import BaseAdapter, tool

_held: list[Any] = []


class ShmAdapter(BaseAdapter):
    __thread_safe__ = True

    @tool
    def echo(self, x: Any) -> Any:
        return x

    @tool
    def info(self, x: Any) -> dict[str, Any]:
        """What the tool sees of its argument."""
        out: dict[str, Any] = {"type": type(x).__name__, "shared": zero_copy.is_shared(x)}
        if isinstance(x, np.ndarray):
            out.update(
                writeable=bool(x.flags.writeable),
                dtype=x.dtype.name,
                shape=list(x.shape),
                sum=float(np.abs(x).sum()) if x.dtype.kind != "b" else int(x.sum()),
            )
            try:
                x[...] = 0
                out["write"] = "ok"
            except (ValueError, TypeError) as e:
                out["write"] = type(e).__name__
            out["copy_writeable"] = bool(zero_copy.writable(x).flags.writeable)
        elif isinstance(x, (bytes, bytearray)):
            out["len"] = len(x)
            out["head"] = bytes(x[:4])
        return out

    @tool
    def hold(self, x: Any) -> int:
        _held.append(x)
        return len(_held)

    @tool
    def drop(self) -> int:
        n = len(_held)
        _held.clear()
        gc.collect()
        return n

    @tool
    def make(self, n: int, dtype: str = "float64", fill: float = 1.0) -> Any:
        a = zero_copy.empty((n,), dtype)
        a[...] = fill
        return a

    @tool
    def make_ref(self, n: int) -> Any:
        a = zero_copy.empty(n, "int32")
        a[...] = np.arange(n, dtype=np.int32)
        return zero_copy.ZeroCopyRef(a)

    @tool
    def make_twice(self, n: int) -> Any:
        """The same zero-copy array twice in one result, and a slice of it."""
        a = zero_copy.empty((n,), "uint8")
        a[...] = 7
        return [a, a, a[n // 2 :]]

    @tool
    def ones(self, n: int, dtype: str = "float64") -> Any:
        return np.ones(n, dtype=dtype)

    @tool
    def blob(self, n: int, kind: str = "bytes") -> Any:
        b = bytes(range(256)) * (n // 256) + bytes(n % 256)
        if kind == "bytearray":
            return bytearray(b)
        if kind == "memoryview":
            return memoryview(b)
        if kind == "strided":
            return memoryview(b + b)[::2]  # not contiguous: its n bytes are b[0::2] + b[0::2]
        if kind == "doubles":
            return memoryview(np.frombuffer(b[: n // 16 * 16], dtype=np.float64).reshape(-1, 2) if n >= 16 else b)
        return b

    @tool
    def many(self, k: int, n: int) -> Any:
        return [np.full(n, i, dtype=np.int64) for i in range(k)]

    @tool
    def arrays(self, k: int, n: int) -> Iterator[Any]:
        for i in range(k):
            yield np.full(n, i, dtype=np.float32)

    @tool
    def ask_host(self, name: str, arg: Any = None, timeout: float | None = None) -> Any:
        """Calls host tool `name` with `arg`; returns what the tool saw of the answer."""
        got = self.session_context.call_host_tool(name, arg, timeout=timeout)
        return {"sum": float(got.sum()), "writeable": bool(got.flags.writeable), "shared": zero_copy.is_shared(got)}

    @tool
    def build(self, recipe: str, dtype: str) -> Any:
        return build_array(recipe, dtype)

    @tool
    def stats(self) -> dict[str, Any]:
        gc.collect()
        return zero_copy.stats()

    @tool
    def enabled(self) -> bool:
        return zero_copy.enabled()

    @tool
    def slow(self, seconds: float) -> None:
        time.sleep(seconds)

    @tool(batch=Batch())
    def sums(self, items: list[dict[str, Any]]) -> list[float]:
        """The sum of each call's array `x` (a batched tool)."""
        return [float(np.sum(it["x"])) for it in items]

    @tool(batch=Batch(stack=True))
    def doubled(self, args: dict[str, Any]) -> Any:
        """Each call's array `x`, doubled, in a new array made in the worker arena (stacked)."""
        x = args["x"]
        out = zero_copy.empty(x.shape, x.dtype.name)
        np.multiply(x, 2, out=out)
        return out


def build_array(recipe: str, dtype: str) -> Any:
    """The array `recipe` names, of `dtype` (the test builds the same to compare)."""
    dt = np.dtype(dtype)
    base = (np.arange(360) % 7 + 1).astype(dt) if dt.kind != "c" else (np.arange(360) + 1j * np.arange(360)).astype(dt)
    if recipe == "0d":
        return np.array(base[3], dtype=dt)
    if recipe == "empty":
        return np.zeros((0, 3), dtype=dt)
    if recipe == "1d":
        return base.copy()
    if recipe == "3d":
        return base[:120].reshape(4, 5, 6).copy()
    if recipe == "slice":
        return base[::3]
    if recipe == "fortran":
        return np.asfortranarray(base[:120].reshape(10, 12))
    if recipe == "bigendian":
        return base.astype(dt.newbyteorder(">"))
    raise ValueError(recipe)
