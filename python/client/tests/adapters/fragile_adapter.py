"""An adapter that can be broken from outside: while the file named by
FRAGILE_MARKER exists it cannot be imported, so a worker that crashes (the
`crash` tool) cannot be restarted and its pool degrades."""

from __future__ import annotations

import os

from snakepit_bridge import BaseAdapter, tool

if os.path.exists(os.environ.get("FRAGILE_MARKER", "")):
    raise ImportError("fragile_adapter is broken on purpose (FRAGILE_MARKER exists)")


class FragileAdapter(BaseAdapter):
    @tool
    def ping(self) -> str:
        return "pong"

    @tool
    def crash(self) -> None:
        """End the worker process at once."""
        os._exit(1)
