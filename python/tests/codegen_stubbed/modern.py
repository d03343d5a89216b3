def pair(first, second):
    return (first, second)
