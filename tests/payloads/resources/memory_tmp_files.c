/* Files on the private tmpfs /tmp are memory: charged to the job's cgroup. */
int main(void) {
    static char buf[1 << 20];
    memset(buf, 7, sizeof buf);
    for (int i = 0; i < 1000; i++) {
        char name[64];
        snprintf(name, sizeof name, "/tmp/hog%d", i);
        int fd = open(name, O_CREAT | O_WRONLY, 0600);
        if (fd < 0) break;
        for (int j = 0; j < 16; j++)
            if (write(fd, buf, sizeof buf) < 0) break;
        close(fd);
    }
    puts("DONE");
}
