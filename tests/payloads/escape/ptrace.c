#include <sys/ptrace.h>
/* Attach to init (root) of the jail: denied by seccomp (outcome 19). */
int main(void) {
    ptrace(PTRACE_ATTACH, 1, 0, 0);
    leak("ptrace returned");
    puts("DONE");
}
