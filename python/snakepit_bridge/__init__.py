"""snakepit_bridge: the Python half of snakepit.

Write an adapter class deriving from :class:`BaseAdapter` (or
:class:`ThreadSafeAdapter`, to serve concurrent requests in the thread
profile), mark methods with :func:`tool`, and run it with
``python -m snakepit_bridge.worker --adapter module.Class``. A tool marked
``@tool(batch=Batch(...))`` gets its concurrent calls together (see
:mod:`snakepit_bridge.batching`). Tools report timings and events to the host
with :mod:`snakepit_bridge.telemetry`, and log with :func:`get_logger`
(records carry the request's correlation id).
"""

from . import telemetry
from ._stream_chunk import StreamChunk
from .base_adapter import BaseAdapter, tool
from .base_adapter_threaded import (
    RequestTracker,
    ThreadLocalStorage,
    ThreadSafeAdapter,
    is_thread_safe,
    require_thread_safe,
    thread_safe_method,
    validate_thread_safety,
)
from .batching import Batch, BatchItemError
from .errors import HostCallRejected, HostCallTimeout, HostToolError, HostToolNotFound, VariableConstraintError
from .logging_config import configure_logging, get_logger
from .session_context import SessionContext
from .thread_safety_checker import (
    NotThreadSafeError,
    ThreadSafetyChecker,
    ThreadSafetyError,
    ThreadSafetyIssue,
    ThreadSafetyWarning,
)

__version__ = "0.1.0"

__all__ = [
    "BaseAdapter",
    "Batch",
    "BatchItemError",
    "HostCallRejected",
    "HostCallTimeout",
    "HostToolError",
    "HostToolNotFound",
    "NotThreadSafeError",
    "RequestTracker",
    "SessionContext",
    "StreamChunk",
    "ThreadLocalStorage",
    "ThreadSafeAdapter",
    "ThreadSafetyChecker",
    "ThreadSafetyError",
    "ThreadSafetyIssue",
    "ThreadSafetyWarning",
    "VariableConstraintError",
    "__version__",
    "configure_logging",
    "get_logger",
    "is_thread_safe",
    "require_thread_safe",
    "telemetry",
    "thread_safe_method",
    "tool",
    "validate_thread_safety",
]
