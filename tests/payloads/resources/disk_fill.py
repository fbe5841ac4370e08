# Many files, each below RLIMIT_FSIZE, in the run directory: the run directory's own size limit
# must stop them (it is a tmpfs of its own). Stops at 300 MB so a failing jail does not fill the
# host's disk. Prints the bytes written.
import errno
buf = b"d" * (1 << 20)
total = 0
for i in range(300):
    if total >= 300 << 20:
        break
    try:
        with open(f"fill{i}", "wb", buffering=0) as f:
            for j in range(64):
                total += f.write(buf)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            break
print("WROTE", total)
print("DONE")
