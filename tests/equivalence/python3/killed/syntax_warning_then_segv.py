import os, signal
x = 1
if x is 2:
    pass
os.kill(os.getpid(), signal.SIGSEGV)
