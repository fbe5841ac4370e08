/* Many files, each below RLIMIT_FSIZE, in the run directory: the run directory's own size limit
 * must stop them (it is a tmpfs of its own). Stops at 300 MB so a failing jail does not fill the
 * host's disk. Prints the bytes written. */
int main(void) {
    static char buf[1 << 20];
    memset(buf, 'd', sizeof buf);
    signal(SIGXFSZ, SIG_IGN);
    long total = 0;
    for (int i = 0; i < 300 && total < 300L << 20; i++) {
        char name[32];
        snprintf(name, sizeof name, "fill%d", i);
        int fd = open(name, O_CREAT | O_WRONLY, 0600);
        if (fd < 0) break;
        ssize_t n = 0;
        for (int j = 0; j < 64 && (n = write(fd, buf, sizeof buf)) > 0; j++) total += n;
        close(fd);
        if (n < 0 && errno == ENOSPC) break;
    }
    printf("WROTE %ld\nDONE\n", total);
}
