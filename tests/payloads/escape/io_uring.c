/* io_uring (a large kernel attack surface that bypasses seccomp for its operations): denied by seccomp (outcome 19). */
#include <sys/mount.h>
#include <sched.h>
int main(void) {
    char params[120] = {0}; syscall(SYS_io_uring_setup, 8, params);
    leak("io_uring_setup returned");
    puts("DONE");
}
