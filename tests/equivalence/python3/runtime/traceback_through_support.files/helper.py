def go(n):
    if n == 0:
        raise RuntimeError('bottom')
    go(n - 1)
