/* Kernel keyrings (shared across the host per uid): denied by seccomp (outcome 19). */
#include <sys/mount.h>
#include <sched.h>
int main(void) {
    syscall(SYS_add_key, "user", "k", "v", 1, -2 /* KEY_SPEC_PROCESS_KEYRING */);
    leak("add_key returned");
    puts("DONE");
}
