def g():
    raise StopIteration
    yield 1
list(g())
