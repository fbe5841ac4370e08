/* Enter another namespace: denied by seccomp (outcome 19). */
#include <sys/mount.h>
#include <sched.h>
int main(void) {
    setns(open("/proc/self/ns/net", O_RDONLY), 0);
    leak("setns returned");
    puts("DONE");
}
