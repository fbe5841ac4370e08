/* Empty files until the run directory has no inodes left (capped at 40000). */
int main(void) {
    long n = 0;
    char name[32];
    for (; n < 40000; n++) {
        snprintf(name, sizeof name, "i%ld", n);
        int fd = open(name, O_CREAT | O_WRONLY, 0600);
        if (fd < 0) break;
        close(fd);
    }
    printf("FILES %ld\nDONE\n", n);
}
