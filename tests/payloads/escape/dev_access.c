#include <dirent.h>
#include <sys/sysmacros.h>
/* /dev holds only null, zero, full, random, urandom (and fd links, shm): no disks, no memory,
 * no kernel log, no terminals; device nodes cannot be made. */
int main(void) {
    DIR *d = opendir("/dev");
    struct dirent *e;
    const char *allowed = " . .. null zero full random urandom fd stdin stdout stderr shm ";
    while ((e = readdir(d))) {
        char w[300];
        snprintf(w, sizeof w, " %s ", e->d_name);
        if (!strstr(allowed, w)) printf("LEAK /dev/%s\n", e->d_name);
    }
    MUST_FAIL("open /dev/mem", open("/dev/mem", O_RDONLY));
    MUST_FAIL("open /dev/kmsg", open("/dev/kmsg", O_RDONLY));
    MUST_FAIL("open /dev/sda", open("/dev/sda", O_RDONLY));
    MUST_FAIL("open /dev/tty", open("/dev/tty", O_RDWR));
    MUST_FAIL("mknod a disk", mknod("sda", S_IFBLK | 0600, makedev(8, 0)));
    MUST_FAIL("mknod /dev/mem", mknod("mem", S_IFCHR | 0600, makedev(1, 1)));
    MUST_FAIL("write /dev/random's pool size", open("/proc/sys/kernel/random/write_wakeup_threshold", O_WRONLY));
    int fd = open("/dev/null", O_WRONLY);
    if (fd < 0 || write(fd, "x", 1) != 1) leak("/dev/null does not work");
    puts("DONE");
}
