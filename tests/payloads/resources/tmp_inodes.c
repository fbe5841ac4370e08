/* Empty files in the private /tmp (a tmpfs without an inode cap of its own): each inode and
 * dentry is kernel memory charged to the job, so the memory limit ends it. */
int main(void) {
    char name[64];
    for (long n = 0; n < 2000000; n++) {
        snprintf(name, sizeof name, "/tmp/%ld", n);
        int fd = open(name, O_CREAT | O_WRONLY, 0600);
        if (fd < 0) { printf("FILES %ld\n", n); break; }
        close(fd);
    }
    puts("DONE");
}
