# Files on the private tmpfs /tmp are memory: charged to the job's cgroup.
buf = b"\x07" * (1 << 20)
try:
    for i in range(1000):
        with open(f"/tmp/hog{i}", "wb") as f:
            for j in range(16):
                f.write(buf)
except OSError:
    pass
print("DONE")
