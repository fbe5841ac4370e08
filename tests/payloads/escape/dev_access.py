# /dev holds only null, zero, full, random, urandom (and fd links, shm): no disks, no memory, no
# kernel log, no terminals; device nodes cannot be made.
import stat
allowed = {"null", "zero", "full", "random", "urandom", "fd", "stdin", "stdout", "stderr", "shm"}
for n in os.listdir("/dev"):
    if n not in allowed:
        leak("/dev/" + n)
for p in ["/dev/mem", "/dev/kmsg", "/dev/sda", "/dev/tty"]:
    must_fail("open " + p, lambda: open(p, "rb"))
must_fail("mknod a disk", lambda: os.mknod("sda", stat.S_IFBLK | 0o600, os.makedev(8, 0)))
must_fail("mknod /dev/mem", lambda: os.mknod("mem", stat.S_IFCHR | 0o600, os.makedev(1, 1)))
with open("/dev/null", "w") as f:
    f.write("x")
print("DONE")
