"""snakepit-client: the pools of a snakepit host, over gRPC (``snakepit serve``).

>>> import snakepit_client as sp
>>> with sp.Client("127.0.0.1:50051", token="...") as client:
...     client.execute("add", a=2, b=3)              # 5
...     client.call("math", "sqrt", 16)              # 4.0
...     for item in client.stream("progress", steps=3):
...         print(item)
...     with client.session(affinity="strict_queue") as s:
...         s.execute("tally"), s.execute("tally")    # (1, 2)

Every failure raises a :class:`SnakepitError` subclass whose ``kind`` is
snakepit's label for it (``python_exception``, ``unknown_tool``,
``bad_arguments``, ``worker_busy``, ``timeout``, ``unauthenticated``, ...).
:class:`AsyncClient` is the same for asyncio.
"""

from ._aio import AsyncClient, AsyncItemStream, AsyncSession
from ._client import Client, ItemStream, Session
from ._errors import (
    BadArgumentsError,
    CancelledError,
    DeadlineExceeded,
    EncodingError,
    InternalError,
    NotFoundError,
    PythonError,
    RefNotFoundError,
    ResourceExhaustedError,
    SessionNotFoundError,
    SnakepitError,
    UnauthenticatedError,
    UnavailableError,
    UnknownToolError,
    VariableError,
    WorkerBusyError,
    WorkerCrashedError,
)
from ._types import NdArray, Ref, StreamRef, Variable, VariableUpdate

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncItemStream",
    "AsyncSession",
    "BadArgumentsError",
    "CancelledError",
    "Client",
    "DeadlineExceeded",
    "EncodingError",
    "InternalError",
    "ItemStream",
    "NdArray",
    "NotFoundError",
    "PythonError",
    "Ref",
    "RefNotFoundError",
    "ResourceExhaustedError",
    "Session",
    "SessionNotFoundError",
    "SnakepitError",
    "StreamRef",
    "UnauthenticatedError",
    "UnavailableError",
    "UnknownToolError",
    "Variable",
    "VariableError",
    "VariableUpdate",
    "WorkerBusyError",
    "WorkerCrashedError",
]
