/* perf events (side channels, kernel attack surface): denied by seccomp (outcome 19). */
#include <sys/mount.h>
#include <sched.h>
int main(void) {
    char attr[128] = {0}; syscall(SYS_perf_event_open, attr, 0, -1, -1, 0);
    leak("perf_event_open returned");
    puts("DONE");
}
