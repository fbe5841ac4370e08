# Files on the private tmpfs /dev/shm are memory: charged to the job's cgroup.
buf = b"\x07" * (1 << 20)
try:
    for i in range(1000):
        with open(f"/dev/shm/hog{i}", "wb") as f:
            for j in range(16):
                f.write(buf)
except OSError:
    pass
print("DONE")
