def check(x):
    return x is 'a'
