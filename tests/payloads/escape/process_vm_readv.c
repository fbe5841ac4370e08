#include <sys/uio.h>
/* Read init's memory: denied by seccomp (outcome 19). */
int main(void) {
    char buf[64];
    struct iovec l = {buf, sizeof buf}, r = {(void *)0x400000, sizeof buf};
    process_vm_readv(1, &l, 1, &r, 1, 0);
    leak("process_vm_readv returned");
    puts("DONE");
}
