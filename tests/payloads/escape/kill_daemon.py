# Signals to the daemon (its host pid), to init, and to everything (-1): none may reach outside
# the job.
import signal
daemon = int(A["pid"])
must_fail("kill(daemon pid, SIGKILL)", lambda: os.kill(daemon, signal.SIGKILL))
must_fail("kill(init, SIGKILL)", lambda: os.kill(1, signal.SIGKILL))
must_fail("kill(init, SIGTERM)", lambda: os.kill(1, signal.SIGTERM))
must_fail("pidfd_open(daemon pid)", lambda: os.pidfd_open(daemon))
must_fail("killpg(daemon, SIGKILL)", lambda: os.killpg(daemon, signal.SIGKILL))
signal.signal(signal.SIGTERM, signal.SIG_IGN)
try:
    os.kill(-1, signal.SIGTERM)
except OSError:
    pass
for p in range(2, 4096):
    if p == os.getpid():
        continue
    try:
        os.kill(p, 0)
        leak(f"can signal pid {p}")
    except OSError:
        pass
print("DONE")
