# Kernel memory: unix datagram socket pairs with full send queues (about 200 KB each, up to 4000
# pairs). Socket buffers are charged to the job's memory cgroup like its own pages.
import socket
pairs, total = [], 0
buf = b"x" * 65000
try:
    while True:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        a.setblocking(False)
        pairs.append((a, b))
        try:
            while True:
                total += a.send(buf)
        except BlockingIOError:
            pass
except OSError:
    pass
print("PAIRS", len(pairs))
print("QUEUED", total)
print("DONE")
