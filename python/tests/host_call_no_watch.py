"""HostCallAdapter in a worker whose watch thread never takes the socket from
a slow inline run, so a test can tell that a host call hands it over itself."""

from __future__ import annotations

from snakepit_bridge import _worker

from host_call_adapter import HostCallAdapter

# Read by the watch thread when it starts, after the adapter is imported.
_worker._INLINE_HANDOFF_SECONDS = 3600.0

__all__ = ["HostCallAdapter"]
