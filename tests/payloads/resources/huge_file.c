/* One file beyond RLIMIT_FSIZE, and a sparse write at 1 TiB: EFBIG (SIGXFSZ ignored). */
int main(void) {
    static char buf[1 << 20];
    signal(SIGXFSZ, SIG_IGN);
    int fd = open("huge", O_CREAT | O_WRONLY, 0600);
    long total = 0;
    ssize_t n;
    while (total < 300L << 20 && (n = write(fd, buf, sizeof buf)) > 0) total += n;
    printf("WROTE %ld\n", total);
    MUST_FAIL("sparse write at 1 TiB", pwrite(fd, "x", 1, 1L << 40));
    MUST_FAIL("ftruncate to 1 TiB", ftruncate(fd, 1L << 40));
    puts("DONE");
}
