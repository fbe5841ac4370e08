/* clone() with CLONE_NEWUSER: denied by seccomp (outcome 19). */
#include <sys/mount.h>
#include <sched.h>
int main(void) {
    syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    leak("clone returned");
    puts("DONE");
}
