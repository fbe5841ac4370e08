# A daemonised grandchild (fork, setsid, fork) that tries to outlive the run and, later, to
# write into the host's canary directory. The run's end must kill it.
import signal, time
if os.fork() == 0:
    os.setsid()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.fork() == 0:
        for i in range(600):
            try:
                open(os.path.join(A["canary"], A["marker"]), "w").close()
            except OSError:
                pass
            time.sleep(1)
    os._exit(0)
os.wait()
print("DONE")
