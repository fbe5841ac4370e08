# /proc must tell nothing about the host or other runs: only the job's processes (init is hidden:
# hidepid=invisible), no host path of the data directory in the mount table, the root cgroup of
# its own cgroup namespace, an empty network namespace, no kernel memory.
dd = A["datadir"]
for name in os.listdir("/proc"):
    if name.isdigit() and int(name) != os.getpid():
        leak("/proc shows pid " + name)
must_fail("read /proc/1/cmdline (init, a copy of the daemon)", lambda: open("/proc/1/cmdline").read())
must_fail("read /proc/1/environ", lambda: open("/proc/1/environ").read())
must_fail("open /proc/1/mem", lambda: open("/proc/1/mem", "r+b"))
must_fail("read /proc/kcore", lambda: open("/proc/kcore", "rb").read(1))
must_fail("read /proc/kmsg", lambda: open("/proc/kmsg", "rb"))
for f in ["/proc/self/mountinfo", "/proc/self/mounts", "/proc/self/cgroup", "/proc/self/environ",
          "/proc/self/cmdline", "/proc/self/status"]:
    text = open(f, "rb").read().decode(errors="replace")
    if dd in text:
        leak(f + " names the host's data directory")
# Every hierarchy (v2, and v1 on hybrid hosts) shows its namespace root "/".
for l in open("/proc/self/cgroup"):
    if l.rsplit(":", 1)[1] != "/\n":
        leak("/proc/self/cgroup: " + l)
ifs = [l.split(":")[0].strip() for l in open("/proc/net/dev") if ":" in l]
if ifs != ["lo"]:
    leak(f"interfaces {ifs}")
line = open("/proc/kallsyms").readline()
if line and not line.startswith("0000000000000000"):
    leak("kallsyms addresses")
print("DONE")
