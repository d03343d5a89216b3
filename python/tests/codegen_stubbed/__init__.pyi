import sys
from typing import Optional, TypeAlias, overload

from ._impl import *
from ._impl import Counter as Counter
from ._impl import merge

_Number: TypeAlias = int | float
_Maybe = Optional[_Number]

__all__ = ["Counter", "merge", "mlog", "parse", "pick", "plain"]

if sys.version_info >= (3, 99):
    def mlog(x: str) -> str: ...

elif sys.version_info >= (3, 8):
    def mlog(x: _Number, base: _Number = ...) -> float: ...

else:
    def mlog(x: bytes) -> bytes: ...

if sys.platform == "never":
    def plain(a: str) -> str: ...

else:
    def plain(a: _Maybe, b: int = 2, *rest: str, flag: bool = False, **extra: float) -> list[int]: ...

@overload
def pick(key: int) -> int: ...
@overload
def pick(key: str, default: None = None) -> str | None: ...
