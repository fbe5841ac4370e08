# Only stdin, stdout and stderr are open: no daemon socket, lock or other run's pipe. (Python may
# open a few of its own: anything it opened is closed again before we look, so list /proc.)
fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
# One of them is the descriptor of the listing itself.
if len(fds) > 4 or fds[:3] != [0, 1, 2]:
    leak(f"descriptors {fds}")
for fd in fds[3:]:
    try:
        t = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        continue
    leak(f"descriptor {fd} -> {t}")
print("DONE")
