# Hard limits cannot be raised; privileges cannot be regained.
import resource
inf = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
for r in ["RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE"]:
    must_fail("raise " + r, lambda: resource.setrlimit(getattr(resource, r), inf))
must_fail("setuid(0)", lambda: os.setuid(0))
must_fail("setgid(0)", lambda: os.setgid(0))
must_fail("setgroups", lambda: os.setgroups([]))
must_fail("sethostname", lambda: (_ for _ in ()).throw(OSError(0, "")) if libc.sethostname(b"x", 1) != 0 else None)
print("DONE")
