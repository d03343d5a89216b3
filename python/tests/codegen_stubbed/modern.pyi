# PEP 695 aliases: parsed on Python 3.12+, a syntax error (no stub) on 3.11.
type Pair = tuple[int, int]
type Either = int | str

def pair(first: int, second: Either) -> Pair: ...
