/* Creating files outside the run directory. /tmp and /dev/shm are writable but private to the
 * step (the test checks that no marker file appears on the host); everything else must fail. */
int main(void) {
    readin();
    const char *m = arg("marker");
    const char *dirs[] = {"/", "/etc", "/usr", "/usr/lib", "/bin", "/home", "/home/jobe",
                          "/home/jobe/runs", "/dev", "/proc", "/proc/sys/kernel", "/var/tmp",
                          "/root", "/run", "/sys", "/lib", arg("canary"), arg("datadir"), NULL};
    char p[2048];
    for (int i = 0; dirs[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", dirs[i], m);
        MUST_FAIL(p, open(p, O_CREAT | O_WRONLY, 0644));
        MUST_FAIL(p, mkdir(p, 0755));
    }
    MUST_FAIL("write /etc/passwd", open("/etc/passwd", O_WRONLY | O_APPEND));
    MUST_FAIL("write /proc/sys/kernel/core_pattern", open("/proc/sys/kernel/core_pattern", O_WRONLY));
    MUST_FAIL("write /proc/sysrq-trigger", open("/proc/sysrq-trigger", O_WRONLY));
    MUST_FAIL("chmod /tmp", chmod("/tmp", 0700));
    MUST_FAIL("rename the run directory", rename(".", "/tmp/x"));
    /* Private scratch space: allowed, and must not reach the host. */
    snprintf(p, sizeof p, "/tmp/%s", m);
    if (open(p, O_CREAT | O_WRONLY, 0644) < 0) leak("/tmp is not writable");
    snprintf(p, sizeof p, "/dev/shm/%s", m);
    if (open(p, O_CREAT | O_WRONLY, 0644) < 0) leak("/dev/shm is not writable");
    /* .. of / is / */
    chdir("/../../..");
    char cwd[64];
    getcwd(cwd, sizeof cwd);
    if (strcmp(cwd, "/") != 0) leak("escaped above /");
    puts("DONE");
}
