# Leaves SysV shared memory, a semaphore set and a message queue (the test's key), a POSIX shared
# memory object and message queue, and files in /tmp and /dev/shm, then exits. The step's own IPC
# namespace and tmpfs mounts go with it: the test finds none of them on the host.
import mmap
key, m = int(A["ipckey"]), A["marker"]
if libc.shmget(key, 1 << 20, 0o1666) < 0:
    leak("shmget failed")
if libc.semget(key, 4, 0o1666) < 0:
    leak("semget failed")
if libc.msgget(key, 0o1666) < 0:
    leak("msgget failed")
fd = os.open(f"/dev/shm/{m}", os.O_CREAT | os.O_RDWR, 0o666)  # what shm_open does
os.ftruncate(fd, 1 << 20)
rt = ctypes.CDLL("librt.so.1", use_errno=True)
if rt.mq_open(f"/{m}".encode(), os.O_CREAT | os.O_RDWR, 0o666, None) < 0:
    ok("mq_open refused")
open(f"/tmp/{m}", "w").close()
print("DONE")
