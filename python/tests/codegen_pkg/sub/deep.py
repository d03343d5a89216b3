def deep_function() -> None:
    pass
