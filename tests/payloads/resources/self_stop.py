# The program and a child stop themselves (SIGSTOP): no CPU is used, the wall clock ends the run,
# and the kill reaches stopped processes.
import signal
sys.stdout.flush()
if os.fork() == 0:
    os.kill(os.getpid(), signal.SIGSTOP)
os.kill(os.getpid(), signal.SIGSTOP)
print("DONE")
