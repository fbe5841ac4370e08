#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
/* The program installs its own allow-everything seccomp filter on top of the jail's, then calls
 * ptrace: filters stack and the strictest answer wins, so the jail still stops it (19). */
int main(void) {
    struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog prog = {1, allow};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) perror("own filter");
    ptrace(PTRACE_TRACEME, 0, 0, 0);
    leak("ptrace returned");
    puts("DONE");
}
