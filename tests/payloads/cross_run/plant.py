# Run A of a slot: leaves everything it can for the next run on the same slot (cross_run/check
# looks for it): SysV IPC, files in /tmp, /dev/shm, $HOME and beside the run directory, a startup
# file, a background process.
import signal, time
key, m = int(A["ipckey"]) + 2, A["marker"]
libc.shmget(key, 4096, 0o1666)
libc.semget(key, 1, 0o1666)
libc.msgget(key, 0o1666)
for d in ["/tmp", "/dev/shm", os.environ["HOME"], "..", "/home/jobe", "/var/tmp"]:
    try:
        open(os.path.join(d, m), "w").close()
    except OSError:
        pass
with open(os.path.join(os.environ["HOME"], ".profile"), "w") as f:
    f.write(f"export PLANTED={m}\n")
if os.fork() == 0:
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    libc.prctl(15, b"planted", 0, 0, 0)
    while True:
        time.sleep(1000)
print("DONE")
