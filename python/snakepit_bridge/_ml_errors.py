"""Recognising machine-learning failures in Python exceptions.

:func:`classify` reads an exception's message (numpy's and torch's wording;
neither is imported here) and returns the structured fields the worker adds to
the ``details`` of the error it sends, so that the host can turn the error
into ``ShapeMismatch``, ``OutOfMemory`` or ``DtypeMismatch``:

* ``ml_error="shape_mismatch"``: ``operation`` (``broadcast``, ``matmul``,
  ``dot``), ``shape_a``, ``shape_b`` (comma-separated dims, e.g. ``2,3``; for
  torch's per-dimension message they are the two sizes at ``dimension``);
* ``ml_error="out_of_memory"``: ``device`` (``cuda:0``, ``mps``, ``cpu``),
  ``requested_mib``, ``free_mib`` (decimal MiB; either may be absent);
* ``ml_error="dtype_mismatch"``: ``expected``, ``got`` (numpy dtype names;
  torch's scalar type names are mapped to them, e.g. ``Float`` -> ``float32``).

It never raises: an exception it cannot read gives ``None``.
"""

from __future__ import annotations

import re

__all__ = ["classify"]

# Size units as torch and numpy print them, in MiB.
_UNITS_MIB: dict[str, float] = {
    "B": 1.0 / (1024 * 1024),
    "bytes": 1.0 / (1024 * 1024),
    "KiB": 1.0 / 1024,
    "KB": 1.0 / 1024,
    "MiB": 1.0,
    "MB": 1.0,
    "GiB": 1024.0,
    "GB": 1024.0,
    "TiB": 1024.0 * 1024,
    "TB": 1024.0 * 1024,
    "PiB": 1024.0 * 1024 * 1024,
}
_SIZE = r"(\d+(?:\.\d+)?)\s*(PiB|TiB|GiB|MiB|KiB|TB|GB|MB|KB|bytes|B)\b"

# ---------------------------------------------------------------- shapes

# numpy: "operands could not be broadcast together with shapes (2,3) (4,5) "
# (and "... with remapped shapes [original->remapped]: (2,3)->(2,3) (4,5)->(4,5)").
_NP_BROADCAST = re.compile(r"operands could not be broadcast together with (remapped )?shapes")
_PAREN_SHAPE = re.compile(r"\(([\d,\s]*)\)")
# numpy: "matmul: Input operand 1 has a mismatch in its core dimension 0, with gufunc
# signature (n?,k),(k,m?)->(n?,m?) (size 4 is different from 3)"
_NP_CORE_DIM = re.compile(
    r"^(\w+): Input operand (\d+) has a mismatch in its core dimension (\d+).*\(size (\d+) is different from (\d+)\)",
    re.S,
)
# numpy: "shapes (2,3) and (4,5) not aligned: 3 (dim 1) != 4 (dim 0)"
_NP_DOT = re.compile(r"shapes \(([\d,\s]*)\) and \(([\d,\s]*)\) not aligned")
# torch: "mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"
_TORCH_MM = re.compile(r"shapes cannot be multiplied \((\d+(?:x\d+)*) and (\d+(?:x\d+)*)\)")
# torch: "The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 1"
_TORCH_SIZE = re.compile(
    r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at non-singleton dimension (-?\d+)"
)

# ---------------------------------------------------------------- memory

# torch < 2.1: "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total
# capacity; ...; 1.20 GiB free; ...)"; torch >= 2.1: "... Tried to allocate 20.00 MiB.
# GPU 0 has a total capacity of 15.78 GiB of which 1.20 GiB is free. ..."
_OOM_HINTS = ("out of memory", "Unable to allocate", "not enough memory")
_TRIED = re.compile(r"Tried to allocate " + _SIZE)
_GPU = re.compile(r"\bGPU (\d+)\b")
_FREE_OLD = re.compile(_SIZE + r" free\b")
_FREE_NEW = re.compile(r"of which " + _SIZE + r" is free")
# numpy: "Unable to allocate 7.45 GiB for an array with shape (1000000000,) and data type float64"
_NP_ALLOC = re.compile(r"Unable to allocate " + _SIZE)
# torch on the CPU: "DefaultCPUAllocator: not enough memory: you tried to allocate 123456 bytes."
_CPU_ALLOC = re.compile(r"not enough memory: you tried to allocate " + _SIZE)

# ----------------------------------------------------------------- dtypes

# torch: "expected scalar type Float but found Double"
_TORCH_SCALAR = re.compile(r"expected scalar type (\w+) but found (\w+)")
# torch: "expected m1 and m2 to have the same dtype, but got: float != double"
_TORCH_SAME = re.compile(r"to have the same dtype, but got: ([\w:<> ]+?) != ([\w:<> ]+?)\s*$", re.M)
# torch: "Found dtype Double but expected Float"
_TORCH_FOUND = re.compile(r"Found dtype (\w+) but expected (\w+)")
# torch: "result type Float can't be cast to the desired output type Long"
_TORCH_RESULT = re.compile(r"result type (\w+) can't be cast to the desired output type (\w+)")
# numpy: "Cannot cast ufunc 'add' output from dtype('float64') to dtype('int64') with casting
# rule 'same_kind'"; "Cannot cast array data from dtype('float64') to dtype('int64') according
# to the rule 'safe'"
_NP_CAST = re.compile(r"Cannot cast .*?from dtype\('?([^')]+)'?\) to dtype\('?([^')]+)'?\)")

# torch's ScalarType names (Python-facing) and C++ type names -> numpy dtype names.
_TORCH_DTYPES: dict[str, str] = {
    "Float": "float32",
    "Double": "float64",
    "Half": "float16",
    "BFloat16": "bfloat16",
    "Long": "int64",
    "Int": "int32",
    "Short": "int16",
    "Char": "int8",
    "Byte": "uint8",
    "Bool": "bool",
    "ComplexFloat": "complex64",
    "ComplexDouble": "complex128",
    "ComplexHalf": "complex32",
    "float": "float32",
    "double": "float64",
    "c10::Half": "float16",
    "c10::BFloat16": "bfloat16",
    "long": "int64",
    "long int": "int64",
    "int64_t": "int64",
    "int": "int32",
    "short": "int16",
    "short int": "int16",
    "signed char": "int8",
    "unsigned char": "uint8",
    "bool": "bool",
    "c10::complex<float>": "complex64",
    "c10::complex<double>": "complex128",
}


def _dims(text: str) -> str:
    """ "2, 3" / "2x3" / "3," -> "2,3" / "2,3" / "3"."""
    return ",".join(p for p in re.split(r"[,x\s]+", text) if p)


def _mib(number: str, unit: str) -> str:
    """A size as decimal MiB without needless digits: 2048, 1228.8, 0.001."""
    text = f"{float(number) * _UNITS_MIB[unit]:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def _torch_dtype(name: str) -> str:
    name = name.strip()
    return _TORCH_DTYPES.get(name, name)


def _shape(message: str) -> dict[str, str] | None:
    if _NP_BROADCAST.search(message):
        text = message
        if "remapped" in message:
            # "(2,3)->(2,3) (4,5)->(4,5)": the original shapes are left of each arrow.
            text = " ".join(part.split("->")[0] for part in message.split(":", 1)[-1].split())
        shapes = _PAREN_SHAPE.findall(text)
        out = {"ml_error": "shape_mismatch", "operation": "broadcast"}
        if len(shapes) >= 2:
            out["shape_a"] = _dims(shapes[0])
            out["shape_b"] = _dims(shapes[1])
        return out
    m = _TORCH_MM.search(message)
    if m:
        return {"ml_error": "shape_mismatch", "operation": "matmul", "shape_a": _dims(m[1]), "shape_b": _dims(m[2])}
    m = _NP_CORE_DIM.search(message)
    if m:
        # Operand `m[2]`'s core dimension has size m[4] where m[5] was expected
        # from the other operand: for matmul the shared k of a (n,k) @ (k,m).
        op = m[1]
        other, this = m[5], m[4]
        a, b = (other, this) if m[2] != "0" else (this, other)
        return {
            "ml_error": "shape_mismatch",
            "operation": op,
            "size_a": a,
            "size_b": b,
            "core_dimension": m[3],
        }
    m = _NP_DOT.search(message)
    if m:
        return {"ml_error": "shape_mismatch", "operation": "dot", "shape_a": _dims(m[1]), "shape_b": _dims(m[2])}
    m = _TORCH_SIZE.search(message)
    if m:
        return {
            "ml_error": "shape_mismatch",
            "operation": "broadcast",
            "shape_a": m[1],
            "shape_b": m[2],
            "dimension": m[3],
        }
    return None


def _memory(exc: BaseException, message: str) -> dict[str, str] | None:
    is_memory_error = isinstance(exc, MemoryError)
    if not is_memory_error and not any(h in message for h in _OOM_HINTS):
        return None
    m = _NP_ALLOC.search(message)
    if m:
        return {"ml_error": "out_of_memory", "device": "cpu", "requested_mib": _mib(m[1], m[2])}
    m = _CPU_ALLOC.search(message)
    if m:
        return {"ml_error": "out_of_memory", "device": "cpu", "requested_mib": _mib(m[1], m[2])}
    lowered = message.lower()
    device = ""
    cuda = "cuda out of memory" in lowered or "cuda error: out of memory" in lowered
    if cuda or type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
        gpu = _GPU.search(message)
        device = f"cuda:{gpu[1]}" if gpu else "cuda"
    elif "mps backend out of memory" in lowered:
        device = "mps"
    elif "xpu out of memory" in lowered:
        gpu = _GPU.search(message)
        device = f"xpu:{gpu[1]}" if gpu else "xpu"
    elif is_memory_error:
        device = "cpu"
    if not device:
        return None
    out = {"ml_error": "out_of_memory", "device": device}
    m = _TRIED.search(message)
    if m:
        out["requested_mib"] = _mib(m[1], m[2])
    m = _FREE_NEW.search(message) or _FREE_OLD.search(message)
    if m:
        out["free_mib"] = _mib(m[1], m[2])
    return out


def _dtype(message: str) -> dict[str, str] | None:
    # (pattern, group of the expected dtype, group of the one got, name mapping)
    forms = (
        (_TORCH_SCALAR, 1, 2, _torch_dtype),
        (_TORCH_SAME, 1, 2, _torch_dtype),
        (_TORCH_FOUND, 2, 1, _torch_dtype),
        (_TORCH_RESULT, 2, 1, _torch_dtype),
        (_NP_CAST, 2, 1, str),
    )
    for pattern, expected, got, name in forms:
        m = pattern.search(message)
        if m:
            return {"ml_error": "dtype_mismatch", "expected": name(m[expected]), "got": name(m[got])}
    return None


def classify(exc: BaseException) -> dict[str, str] | None:
    """The ``details`` fields describing ``exc`` as an ML failure, or None.

    Never raises (an exception whose ``str()`` fails is simply not recognised).
    """
    try:
        message = str(exc)
        if len(message) > 8192:
            # The wording is at the start; a huge message is not worth scanning.
            message = message[:8192]
        return _memory(exc, message) or _shape(message) or _dtype(message)
    except Exception:
        return None
