class Counter:
    """Counts."""

    def __init__(self, start=0):
        self.value = start
        self._label = ""

    @property
    def label(self):
        return self._label

    @label.setter
    def label(self, text):
        self._label = text

    def bump(self, by=1):
        self.value += by
        return self

    @classmethod
    def make(cls):
        return cls()


def merge(a, b):
    return {**a, **b}


def parse(text):
    return tuple(int(t) for t in text.split())
