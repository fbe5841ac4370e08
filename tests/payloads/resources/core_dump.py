# RLIMIT_CORE is 0 (soft = hard): it cannot be raised, and abort() leaves no core file.
import resource
must_fail("raise RLIMIT_CORE", lambda: resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2))
sys.stdout.flush()
os.abort()
