/* chroot: denied by seccomp (outcome 19). */
#include <sys/mount.h>
#include <sched.h>
int main(void) {
    chroot("/tmp");
    leak("chroot returned");
    puts("DONE");
}
