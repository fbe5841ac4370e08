/* Eight processes of 24 MB each: every one stays under its address-space limit (RLIMIT_AS =
 * memorylimit for native code), together they pass the cgroup's real-memory limit. */
int main(void) {
    for (int i = 0; i < 8; i++) {
        if (fork() == 0) {
            char *p = malloc(24 << 20);
            if (p) memset(p, 1, 24 << 20);
            pause();
            _exit(0);
        }
    }
    while (wait(NULL) > 0) {}
}
