# Run B on the same slot: nothing of run A (cross_run/plant) may be visible.
key, m = int(A["ipckey"]) + 2, A["marker"]
for what, r in [("shm", libc.shmget(key, 0, 0)), ("sem", libc.semget(key, 0, 0)), ("msg", libc.msgget(key, 0))]:
    if r >= 0:
        leak("SysV " + what + " of run A")
for d in ["/tmp", "/dev/shm", os.environ["HOME"], "..", "/home/jobe", "/var/tmp"]:
    if os.path.exists(os.path.join(d, m)):
        leak(f"{d}/{m} of run A")
if os.path.exists(os.path.join(os.environ["HOME"], ".profile")):
    leak("$HOME/.profile of run A")
for k, v in os.environ.items():
    if m in v:
        leak(f"environment {k}={v}")
for p in os.listdir("/proc"):
    if p.isdigit() and int(p) != os.getpid():
        leak(f"process {p} of run A")
for f in os.listdir("/tmp") + os.listdir("/dev/shm"):
    leak("left in /tmp or /dev/shm: " + f)
import socket
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind("\0" + m)
except OSError as e:
    leak(f"abstract socket @{m} of run A still bound: {e}")
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 40000 + int(A["ipckey"]) % 20000))
except OSError as e:
    leak(f"UDP port of run A still bound: {e}")
print("DONE")
