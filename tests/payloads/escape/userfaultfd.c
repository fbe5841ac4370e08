/* userfaultfd (stalls the kernel at will: a classic exploit aid): denied by seccomp (outcome 19). */
#include <sys/mount.h>
#include <sched.h>
int main(void) {
    syscall(SYS_userfaultfd, 0);
    leak("userfaultfd returned");
    puts("DONE");
}
