/* Mount a filesystem: denied by seccomp (outcome 19). */
#include <sys/mount.h>
#include <sched.h>
int main(void) {
    mount("none", "/tmp", "tmpfs", 0, NULL);
    leak("mount returned");
    puts("DONE");
}
