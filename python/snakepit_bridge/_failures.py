"""How a failure in the worker reaches the caller: the Error frame of an exception.

An exception crossing to the host keeps its type name, message and
traceback (from the first frame of the tool's own code); the FFI's typed
errors and recognised ML failures add their kind and details. Used by the
runner (``_runner.py``) and the reader (``_worker.py``).
"""

from __future__ import annotations

import asyncio
import os
import traceback

from . import _ffi
from ._codec import EncodingError
from ._frames import TooLarge, encoding_error, error, error_message, error_reply
from ._ml_errors import classify
from ._proto import snakepit_pb2 as pb
from ._request import Cancelled
from .batching import BatchItemError
from .errors import DrainDeadlineExceeded

__all__: list[str] = []

_DIR = os.path.dirname(__file__)
# The worker's own files (the code that runs a tool): their frames leading a
# tool's traceback are left out.
_INTERNAL_FILES = frozenset(
    {os.path.join(_DIR, name) for name in ("_worker.py", "_runner.py", "_binding.py", "_host_calls.py")}
    | {_ffi.__file__}
)


def exc_text(e: BaseException) -> str:
    """str(e), or a stand-in when the exception's __str__ itself fails."""
    try:
        return str(e)
    except Exception:
        return f"<{type(e).__name__} whose str() failed>"


def format_tb(e: BaseException) -> str:
    """The traceback of `e` from the first frame of the tool's own code (or,
    when it failed in the worker's or the FFI's code itself, from the last)."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename in _INTERNAL_FILES:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(e), e, tb))


def exception_frame(fid: int, e: BaseException) -> bytes:
    """The Error frame for exception `e` (see :func:`exception_error`)."""
    return error_reply(fid, exception_error(e))


def exception_error(e: BaseException) -> pb.Error:
    """The Error for exception `e`: PYTHON_EXCEPTION, with its module, the
    fields of a recognised ML failure and a BatchItemError's own details in
    `details`; the FFI's typed errors (refs, helpers) get their own kind and
    details. Also the error of one call of a batch its tool failed."""
    t = type(e)
    typed = _ffi.wire_error(e)
    if typed is not None:
        kind, details = typed
        return error_message(kind, exc_text(e), python_type=t.__name__, details=details)
    details = {"module": str(t.__module__)}
    try:
        ml = classify(e)
    except Exception:  # the classifier must never cost the caller its error
        ml = None
    if ml:
        details.update(ml)
    if isinstance(e, BatchItemError):
        details = {**e.details, **details}
    return error_message(
        pb.ERROR_KIND_PYTHON_EXCEPTION,
        exc_text(e),
        python_type=t.__name__,
        # An exception a batched tool returned without raising it has none.
        tb=format_tb(e) if e.__traceback__ is not None else "",
        details=details,
    )


def failure_frame(fid: int, e: BaseException) -> bytes:
    """The Error frame for a request that ended in `e`."""
    if isinstance(e, (Cancelled, asyncio.CancelledError)):
        return error(fid, pb.ERROR_KIND_CANCELLED, "cancelled")
    if isinstance(e, _ffi.FfiArgumentError):
        return error(fid, pb.ERROR_KIND_BAD_ARGUMENTS, str(e), parameter=e.parameter, details=e.details or None)
    if isinstance(e, DrainDeadlineExceeded):
        return error(
            fid,
            pb.ERROR_KIND_TIMEOUT,
            str(e),
            python_type=type(e).__name__,
            details={"tool": e.tool, "items": str(e.items), "timeout_ms": str(e.timeout_ms)},
        )
    if isinstance(e, TooLarge):
        return error(
            fid, pb.ERROR_KIND_PAYLOAD_TOO_LARGE, str(e), details={"size": str(e.size), "limit": str(e.limit)}
        )
    if isinstance(e, EncodingError):
        return encoding_error(fid, e)
    return exception_frame(fid, e)
