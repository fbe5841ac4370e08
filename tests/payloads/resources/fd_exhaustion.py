import resource
must_fail("raise RLIMIT_NOFILE", lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 20, 1 << 20)))
fds = []
try:
    while True:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
print("FDS", len(fds))
print("DONE")
