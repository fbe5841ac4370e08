# One file beyond RLIMIT_FSIZE, and a sparse write at 1 TiB: EFBIG (Python ignores SIGXFSZ).
buf = b"\0" * (1 << 20)
total = 0
fd = os.open("huge", os.O_CREAT | os.O_WRONLY, 0o600)
try:
    while total < 300 << 20:
        total += os.write(fd, buf)
except OSError:
    pass
print("WROTE", total)
must_fail("sparse write at 1 TiB", lambda: os.pwrite(fd, b"x", 1 << 40))
must_fail("ftruncate to 1 TiB", lambda: os.ftruncate(fd, 1 << 40))
print("DONE")
