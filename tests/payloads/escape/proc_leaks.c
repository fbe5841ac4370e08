#include <dirent.h>
/* /proc must tell nothing about the host or other runs: only the job's processes (init is
 * hidden: hidepid=invisible), no host path of the data directory in the mount table, the root
 * cgroup of its own cgroup namespace, an empty network namespace, no kernel memory. */
static int contains(const char *path, const char *needle) {
    static char buf[1 << 16];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    for (ssize_t i = 0; i < n; i++) if (!buf[i]) buf[i] = ' ';
    return strstr(buf, needle) != NULL;
}
int main(void) {
    readin();
    const char *dd = arg("datadir");
    DIR *d = opendir("/proc");
    struct dirent *e;
    while ((e = readdir(d)))
        if (atoi(e->d_name) > 0 && atoi(e->d_name) != getpid())
            printf("LEAK /proc shows pid %s\n", e->d_name);
    MUST_FAIL("read /proc/1/cmdline (init, a copy of the daemon)", open("/proc/1/cmdline", O_RDONLY));
    MUST_FAIL("read /proc/1/environ", open("/proc/1/environ", O_RDONLY));
    MUST_FAIL("open /proc/1/mem", open("/proc/1/mem", O_RDWR));
    MUST_FAIL("read /proc/kcore", open("/proc/kcore", O_RDONLY));
    MUST_FAIL("read /proc/kmsg", open("/proc/kmsg", O_RDONLY));
    const char *files[] = {"/proc/self/mountinfo", "/proc/self/mounts", "/proc/self/cgroup",
                           "/proc/self/environ", "/proc/self/cmdline", "/proc/self/status", NULL};
    for (int i = 0; files[i]; i++) {
        char w[256];
        snprintf(w, sizeof w, "%s names the host's data directory", files[i]);
        if (contains(files[i], dd)) leak(w); else ok(w);
    }
    /* Every hierarchy (v2, and v1 on hybrid hosts) shows its namespace root "/". */
    FILE *cg = fopen("/proc/self/cgroup", "r");
    char l[512];
    while (cg && fgets(l, sizeof l, cg)) {
        char *path = strrchr(l, ':');
        if (!path || strcmp(path, ":/\n") != 0) printf("LEAK /proc/self/cgroup: %s", l);
    }
    /* The network namespace has only lo: /proc/net/dev lists one interface. */
    FILE *f = fopen("/proc/net/dev", "r");
    char line[512];
    int ifs = 0;
    while (f && fgets(line, sizeof line, f)) if (strchr(line, ':')) { ifs++; if (!strstr(line, "lo:")) printf("LEAK interface %s", line); }
    if (ifs == 1) ok("only lo");
    /* Kernel pointers are hidden from an unprivileged reader. */
    f = fopen("/proc/kallsyms", "r");
    if (f && fgets(line, sizeof line, f) && strncmp(line, "0000000000000000", 16) != 0) leak("kallsyms addresses");
    puts("DONE");
}
