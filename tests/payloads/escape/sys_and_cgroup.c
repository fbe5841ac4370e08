#include <sys/resource.h>
/* /sys is not mounted: no cgroup files to raise limits or move out of the job's cgroup, no
 * devices, no kernel knobs. */
int main(void) {
    readin();
    MUST_FAIL("open /sys", open("/sys", O_RDONLY | O_DIRECTORY));
    MUST_FAIL("open /sys/fs/cgroup/cgroup.procs", open("/sys/fs/cgroup/cgroup.procs", O_WRONLY));
    MUST_FAIL("open /sys/kernel/debug", open("/sys/kernel/debug", O_RDONLY));
    MUST_FAIL("open /sys/fs/bpf", open("/sys/fs/bpf", O_RDONLY));
    MUST_FAIL("write /proc/self/oom_score_adj -1000", (({ int fd = open("/proc/self/oom_score_adj", O_WRONLY); fd < 0 ? -1 : write(fd, "-1000", 5); })));
    MUST_FAIL("setpriority -20", setpriority(0, 0, -20) == 0 ? 0 : -1);
    puts("DONE");
}
