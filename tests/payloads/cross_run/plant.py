# Run A of a slot: leaves everything it can for the next run on the same slot (cross_run/check
# looks for it): SysV IPC, files in /tmp, /dev/shm, $HOME and beside the run directory, a startup
# file, a background process, sockets of the slot's network namespace (which outlives the run)
# kept alive in flight.
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
# Sockets kept alive after the run by an SCM_RIGHTS cycle (each in flight inside its own queue):
# an abstract unix name and a UDP port of the slot's network namespace (which outlives the run).
import socket, array
def in_flight(*socks):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    fds = array.array("i", [s.fileno() for s in socks] + [a.fileno(), b.fileno()])
    a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    b.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
try:
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.bind("\0" + m)
    u.listen()
    d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    d.bind(("0.0.0.0", 40000 + int(A["ipckey"]) % 20000))
    in_flight(u, d)
except OSError as e:
    print("in-flight sockets:", e)
print("DONE")
