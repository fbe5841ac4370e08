/* Load eBPF: denied by seccomp (outcome 19). */
#include <sys/mount.h>
#include <sched.h>
int main(void) {
    char attr[128] = {0}; syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, attr, sizeof attr);
    leak("bpf returned");
    puts("DONE");
}
