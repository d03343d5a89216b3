"""snakepit_bridge: the Python half of snakepit.

Write an adapter class deriving from :class:`BaseAdapter`, mark methods with
:func:`tool`, and run it with ``python -m snakepit_bridge.worker --adapter module.Class``.
"""

from ._stream_chunk import StreamChunk
from .base_adapter import BaseAdapter, tool
from .errors import HostCallTimeout, HostToolError, HostToolNotFound, VariableConstraintError
from .session_context import SessionContext

__version__ = "0.1.0"

__all__ = [
    "BaseAdapter",
    "HostCallTimeout",
    "HostToolError",
    "HostToolNotFound",
    "SessionContext",
    "StreamChunk",
    "VariableConstraintError",
    "__version__",
    "tool",
]
