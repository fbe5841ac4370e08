import os, signal
print('bye', flush=True)
os.kill(os.getpid(), signal.SIGTERM)
