"""numpy on demand: only arrays need it.

numpy is the package's optional ``numpy`` extra (``snakepit-bridge[numpy]``);
everything else works without it. Code that needs it calls :func:`load`,
which names the extra when numpy is missing.
"""

from __future__ import annotations

import sys
from types import ModuleType

__all__: list[str] = []

#: What to install to get numpy.
INSTALL_HINT = "install the numpy extra: pip install 'snakepit-bridge[numpy]'"


def load(what: str) -> ModuleType:
    """The numpy module; :class:`ModuleNotFoundError` saying that `what` needs
    numpy and how to install it when it is missing."""
    try:
        import numpy
    except ImportError:
        raise ModuleNotFoundError(
            f"{what} needs numpy, which is not installed in this Python environment ({sys.prefix}); {INSTALL_HINT}",
            name="numpy",
        ) from None
    return numpy
