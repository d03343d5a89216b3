"""The showcase adapter under its first module path.

``snakepit_bridge.showcase.ShowcaseAdapter`` is
:class:`snakepit_bridge.adapters.showcase.ShowcaseAdapter`: configurations
may name either.
"""

from __future__ import annotations

from .adapters.showcase import ShowcaseAdapter

__all__ = ["ShowcaseAdapter"]
