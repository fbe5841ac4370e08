#include <sched.h>
#include <sys/resource.h>
/* A real-time or deadline scheduling class would let a spinner starve the host (the CPU budget
 * is counted, but a SCHED_FIFO loop on every core stalls everything else until then). The jail
 * sets RLIMIT_RTPRIO and RLIMIT_NICE to 0 whatever the daemon inherited (the test raises them in
 * the daemon), and the program has no CAP_SYS_NICE. */
int main(void) {
    struct sched_param p = {.sched_priority = 1};
    MUST_FAIL("SCHED_FIFO", sched_setscheduler(0, SCHED_FIFO, &p));
    MUST_FAIL("SCHED_RR", sched_setscheduler(0, SCHED_RR, &p));
    unsigned attr[14] = {56, 6 /* SCHED_DEADLINE */, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    ((unsigned long long *)attr)[3] = 10000000; /* runtime 10 ms */
    ((unsigned long long *)attr)[4] = 20000000; /* deadline */
    ((unsigned long long *)attr)[5] = 20000000; /* period */
    MUST_FAIL("SCHED_DEADLINE", syscall(SYS_sched_setattr, 0, attr, 0));
    MUST_FAIL("nice -20", setpriority(PRIO_PROCESS, 0, -20));
    MUST_FAIL("nice -1", setpriority(PRIO_PROCESS, 0, -1));
    puts("DONE");
}
