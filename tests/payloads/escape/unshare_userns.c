/* A new user namespace (root inside it, the usual first step of a kernel exploit): denied by seccomp (outcome 19). */
#include <sys/mount.h>
#include <sched.h>
int main(void) {
    unshare(CLONE_NEWUSER);
    leak("unshare returned");
    puts("DONE");
}
