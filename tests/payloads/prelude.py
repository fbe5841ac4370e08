import os, sys
# Payload protocol (README.md): stdin holds "key=value" words from the test; print "OK <what>" for
# an attempt that was refused, "LEAK <what>" for one that got through, "DONE" at the end.
A = dict(w.split("=", 1) for w in sys.stdin.read().split() if "=" in w)
def ok(w, e=""): print("OK", w, e)
def leak(w): print("LEAK", w)
def must_fail(what, f):
    try:
        f()
    except (OSError, ValueError) as e:
        ok(what, str(e))
    else:
        leak(what)
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def syscall(nr, *args):
    """A raw syscall (x86_64 numbers); returns (result, errno)."""
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return r, ctypes.get_errno()
