"""Heartbeats: how the host tells a live worker from a hung one, and their settings.

The host sends every worker a Ping every ``ping_interval_ms``; the worker
answers with a Pong from its reader thread, whatever its tools are doing, so
an adapter takes no part in it. A Ping unanswered within ``timeout_ms`` is
missed; after ``max_missed_heartbeats`` missed in a row the host kills the
worker and starts a new one. (A tool that holds the GIL without pause, in C
code that never releases it, delays the Pong: give such pools a longer
``timeout_ms``.)

The settings belong to the pool, on the host (``[pools.heartbeat]`` with
``enabled``, ``interval_ms``, ``timeout_ms``, ``max_missed``).
:class:`HeartbeatConfig` holds them under the names adapter configurations
often use, converts between the two spellings, and says how long a hung
worker may go unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["HeartbeatConfig"]

# Other spellings of the fields, as the host's pool configuration has them.
_ALIASES = {"interval_ms": "ping_interval_ms", "max_missed": "max_missed_heartbeats"}
_FIELDS = ("enabled", "ping_interval_ms", "timeout_ms", "max_missed_heartbeats")
# Settings other hosts have that this runtime has no equivalent of.
_UNSUPPORTED = {
    "initial_delay_ms": "this runtime has no separate delay before the first ping",
    "dependent": "a worker always ends when its host's connection does",
}


@dataclass(frozen=True, slots=True)
class HeartbeatConfig:
    """A pool's heartbeat settings; the defaults are the host's."""

    enabled: bool = True
    ping_interval_ms: int = 2000
    timeout_ms: int = 2000
    max_missed_heartbeats: int = 3

    def __post_init__(self) -> None:
        for name in ("ping_interval_ms", "timeout_ms", "max_missed_heartbeats"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"heartbeat {name} must be an int of at least 1, got {value!r}")

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> HeartbeatConfig:
        """Settings from a mapping under either spelling (``ping_interval_ms`` or
        ``interval_ms``, ``max_missed_heartbeats`` or ``max_missed``).

        Keys this runtime has no equivalent of (``initial_delay_ms``,
        ``dependent``) and unknown keys raise ``ValueError`` naming them,
        rather than being dropped without a word.
        """
        values: dict[str, Any] = {}
        problems: list[str] = []
        for key, value in settings.items():
            name = _ALIASES.get(key, key)
            if name in _FIELDS:
                values[name] = value
            elif key in _UNSUPPORTED:
                problems.append(f"{key} is not supported ({_UNSUPPORTED[key]})")
            else:
                problems.append(f"{key} is not a heartbeat setting (settings: {', '.join(_FIELDS)})")
        if problems:
            raise ValueError("; ".join(problems))
        return cls(**values)

    def to_pool_config(self) -> dict[str, Any]:
        """The settings as the host's ``[pools.heartbeat]`` table spells them."""
        return {
            "enabled": self.enabled,
            "interval_ms": self.ping_interval_ms,
            "timeout_ms": self.timeout_ms,
            "max_missed": self.max_missed_heartbeats,
        }

    def detection_time_ms(self) -> int | None:
        """The longest a worker that hangs may go unnoticed (None when heartbeats are off).

        The host looks at its last ping once per interval, so each missed
        beat takes the timeout rounded up to whole intervals; add up to one
        interval before the first ping the hung worker misses.
        """
        if not self.enabled:
            return None
        per_miss = -(-self.timeout_ms // self.ping_interval_ms) * self.ping_interval_ms
        return self.max_missed_heartbeats * per_miss + self.ping_interval_ms
