"""A class with every kind of member, annotated (no stub)."""

from __future__ import annotations

from typing import ClassVar, Literal, Optional, Union


class Shape:
    """A rectangle."""

    sides: ClassVar[int] = 4

    def __init__(self, width: float, height: float = 1.0) -> None:
        """Make a shape."""
        self.width = width
        self.height = height

    @property
    def area(self) -> float:
        """width times height"""
        return self.width * self.height

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def scaled(self, factor: float) -> Shape:
        return Shape(self.width * factor, self.height * factor)

    @classmethod
    def unit(cls) -> Shape:
        return cls(1.0)

    @staticmethod
    def ratio(a: float, b: float) -> float:
        return a / b

    def _hidden(self) -> None:
        pass


def nested(
    value: Optional[int | list[int]] | str = "x", flags: Literal["a", "b"] | bool = False
) -> Union[int, Optional[bool]]:
    """Unions inside optionals inside unions, flattened."""
    return None
