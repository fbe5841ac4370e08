# /sys is not mounted: no cgroup files to raise limits or move out of the job's cgroup, no devices,
# no kernel knobs.
must_fail("list /sys", lambda: os.listdir("/sys"))
must_fail("open /sys/fs/cgroup/cgroup.procs", lambda: open("/sys/fs/cgroup/cgroup.procs", "w"))
must_fail("open /sys/kernel/debug", lambda: os.listdir("/sys/kernel/debug"))
must_fail("open /sys/fs/bpf", lambda: os.listdir("/sys/fs/bpf"))
def oom():
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("-1000")
must_fail("write /proc/self/oom_score_adj -1000", oom)
must_fail("setpriority -20", lambda: os.setpriority(os.PRIO_PROCESS, 0, -20))
print("DONE")
