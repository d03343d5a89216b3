"""A class with more methods than a small max_class_methods, some inherited."""

__all__ = ["Base", "Wide"]


class Base:
    def b_one(self) -> int:
        return 1

    def b_two(self) -> int:
        return 2

    def b_three(self) -> int:
        return 3

    def b_four(self) -> int:
        return 4

    def b_five(self) -> int:
        return 5


class Wide(Base):
    def w_one(self) -> str:
        return "1"

    def w_two(self) -> str:
        return "2"

    def w_three(self) -> str:
        return "3"

    def w_four(self) -> str:
        return "4"

    @property
    def size(self) -> int:
        return 4
