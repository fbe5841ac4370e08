# Python 3.11 calls Python functions without C recursion; comparing two deeply nested lists
# recurses in C until the stack overflows (SIGSEGV).
sys.setrecursionlimit(1 << 30)
a, b = [], []
for i in range(300_000):
    a, b = [a], [b]
a == b
