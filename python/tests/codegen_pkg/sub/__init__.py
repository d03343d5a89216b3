__all__ = ["sub_function"]


def sub_function(flag: bool = False) -> bool:
    return not flag
