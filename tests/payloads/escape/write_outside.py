# Creating files outside the run directory. /tmp and /dev/shm are writable but private to the
# step (the test checks that no marker file appears on the host); everything else must fail.
m = A["marker"]
for d in ["/", "/etc", "/usr", "/usr/lib", "/bin", "/home", "/home/jobe", "/home/jobe/runs", "/dev",
          "/proc", "/proc/sys/kernel", "/var/tmp", "/root", "/run", "/sys", "/lib", A["canary"],
          A["datadir"]]:
    p = os.path.join(d, m)
    must_fail(p, lambda: open(p, "w"))
    must_fail(p, lambda: os.mkdir(p))
must_fail("write /etc/passwd", lambda: open("/etc/passwd", "a"))
must_fail("write /proc/sys/kernel/core_pattern", lambda: open("/proc/sys/kernel/core_pattern", "w"))
must_fail("write /proc/sysrq-trigger", lambda: open("/proc/sysrq-trigger", "w"))
must_fail("chmod /tmp", lambda: os.chmod("/tmp", 0o700))
must_fail("rename the run directory", lambda: os.rename(os.getcwd(), "/tmp/x"))
open("/tmp/" + m, "w").close()
open("/dev/shm/" + m, "w").close()
os.chdir("/../../..")
if os.getcwd() != "/":
    leak("escaped above /")
print("DONE")
