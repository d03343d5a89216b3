"""No __all__: its public names defined here."""

import json  # noqa: F401  (imported modules are not members)
from os.path import join  # noqa: F401  (nor what it imports)


def beta_function(values: tuple[int, ...], pair: tuple[str, bytes]) -> set[str]:
    return {str(v) for v in values}


def _private_function() -> None:
    pass
