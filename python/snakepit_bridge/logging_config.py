"""Logging for workers and adapters: the level from ``SNAKEPIT_LOG_LEVEL``, the correlation id on every record.

::

    from snakepit_bridge import get_logger

    log = get_logger(__name__)
    log.info("loaded %d rows", n)   # ... INFO [<correlation id>] my_adapter: loaded 3 rows

:func:`configure_logging` (the worker calls it at start-up, before it loads
the adapter) sends the records of every logger to stderr, one line each in
:data:`LOG_FORMAT`, at the level named by ``SNAKEPIT_LOG_LEVEL``: ``debug``,
``info``, ``warning``, ``error``, ``critical`` or ``none`` (nothing is
logged), in any case; unset, empty or unknown means :data:`DEFAULT_LOG_LEVEL`.

Each record handled by that handler, and each record logged through a logger
from :func:`get_logger` (whatever handler takes it, pytest's ``caplog``
included), has the attribute ``correlation_id``: the correlation id current
where it was logged (see :func:`snakepit_bridge.telemetry.get_correlation_id`),
or :data:`NO_CORRELATION_ID` (``"-"``) when there is none, so format strings
can always name it. A value passed as ``extra={"correlation_id": ...}`` is
kept.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TextIO

from .telemetry import get_correlation_id

__all__ = [
    "DEFAULT_LOG_LEVEL",
    "LOG_FORMAT",
    "LOG_LEVEL_ENV",
    "NO_CORRELATION_ID",
    "CorrelationIdFilter",
    "configure_logging",
    "get_logger",
    "log_level_from_env",
]

#: The environment variable naming the level.
LOG_LEVEL_ENV = "SNAKEPIT_LOG_LEVEL"
#: The level when ``SNAKEPIT_LOG_LEVEL`` is unset, empty or unknown.
DEFAULT_LOG_LEVEL = "info"
#: ``record.correlation_id`` of a record logged where no correlation id is current.
NO_CORRELATION_ID = "-"
#: The line format of the handler :func:`configure_logging` installs.
LOG_FORMAT = "%(asctime)s %(levelname)s [%(correlation_id)s] %(name)s: %(message)s"

# Above CRITICAL: no record passes.
_OFF = logging.CRITICAL + 10

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "none": _OFF,
}


class CorrelationIdFilter(logging.Filter):
    """Sets ``record.correlation_id`` (the current id, else ``"-"``) unless the record has one; passes every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = get_correlation_id() or NO_CORRELATION_ID
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (it may be replaced after start-up)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


_FILTER = CorrelationIdFilter()
_lock = threading.Lock()
_handler: logging.Handler | None = None


def log_level_from_env() -> tuple[int, str | None]:
    """The level ``SNAKEPIT_LOG_LEVEL`` names, and the value when it is not one of the known names (else None)."""
    raw = os.environ.get(LOG_LEVEL_ENV, "")
    name = raw.strip().lower()
    if not name:
        return _LEVELS[DEFAULT_LOG_LEVEL], None
    level = _LEVELS.get(name)
    if level is None:
        return _LEVELS[DEFAULT_LOG_LEVEL], raw
    return level, None


def configure_logging(force: bool = False) -> None:
    """Log every record at or above the ``SNAKEPIT_LOG_LEVEL`` level to stderr, with its correlation id.

    Sets the root logger's level and adds one stderr handler in
    :data:`LOG_FORMAT` that gives each record its ``correlation_id``. Later
    calls do nothing unless ``force`` is true: then the variable is read
    again and that handler replaced. Other handlers are left as they are.
    """
    global _handler
    with _lock:
        if _handler is not None and not force:
            return
        level, unknown = log_level_from_env()
        root = logging.getLogger()
        if _handler is not None:
            root.removeHandler(_handler)
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(_FILTER)
        root.addHandler(handler)
        root.setLevel(level)
        _handler = handler
    if unknown is not None:
        logging.getLogger("snakepit_bridge").warning(
            "%s=%r is not one of %s; logging at %s",
            LOG_LEVEL_ENV,
            unknown,
            ", ".join(n for n in _LEVELS if n != "warn"),
            DEFAULT_LOG_LEVEL,
        )


def get_logger(name: str) -> logging.Logger:
    """The logger ``name`` (as :func:`logging.getLogger`), whose records carry ``correlation_id``.

    It configures nothing else: inside a worker the records go to the
    worker's stderr handler; elsewhere, wherever the application's logging
    setup sends them (call :func:`configure_logging` for the worker's).
    """
    log = logging.getLogger(name)
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)
    return log
