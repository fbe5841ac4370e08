/* open_by_handle_at (the "shocker" container escape: open host files by handle): denied by seccomp (outcome 19). */
#include <sys/mount.h>
#include <sched.h>
int main(void) {
    char h[136] = {8, 0, 0, 0, 1}; syscall(SYS_open_by_handle_at, AT_FDCWD, h, O_RDONLY);
    leak("open_by_handle_at returned");
    puts("DONE");
}
