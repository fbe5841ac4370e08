#include <dirent.h>
#include <time.h>
/* Reads every file under /usr for 1.5 s: the page cache it fills is charged to the job and
 * reclaimed, not an OOM. */
static double t0;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static long total;
static void walk(const char *dir, int depth) {
    DIR *d = opendir(dir);
    if (!d || depth > 8) { if (d) closedir(d); return; }
    struct dirent *e;
    static char buf[1 << 16];
    while ((e = readdir(d)) && now() - t0 < 1.5) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (e->d_type == DT_DIR) walk(p, depth + 1);
        else if (e->d_type == DT_REG) {
            int fd = open(p, O_RDONLY);
            if (fd < 0) continue;
            ssize_t n;
            while ((n = read(fd, buf, sizeof buf)) > 0) total += n;
            close(fd);
        }
    }
    closedir(d);
}
int main(void) {
    t0 = now();
    walk("/usr", 0);
    printf("READ %ld\nDONE\n", total);
}
