"""Adapters shipped with the package, under the module paths pools name.

* :class:`~snakepit_bridge.adapters.showcase.ShowcaseAdapter`
  (``snakepit_bridge.adapters.showcase.ShowcaseAdapter``): one tool for each
  thing an adapter can do; its stream chunk class is
  ``snakepit_bridge.adapters.showcase.tool.StreamChunk``.
* :class:`~snakepit_bridge.adapters.threaded_showcase.ThreadedShowcaseAdapter`
  (``snakepit_bridge.adapters.threaded_showcase.ThreadedShowcaseAdapter``):
  the thread-safe patterns, for the thread profile.
* :class:`~snakepit_bridge.adapters.template.TemplateAdapter`
  (``snakepit_bridge.adapters.template.TemplateAdapter``): a documented
  starting point to copy.
"""

from __future__ import annotations

from .showcase import ShowcaseAdapter
from .template import TemplateAdapter
from .threaded_showcase import ThreadedShowcaseAdapter

__all__ = ["ShowcaseAdapter", "TemplateAdapter", "ThreadedShowcaseAdapter"]
