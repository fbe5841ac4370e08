#include <sys/resource.h>
/* RLIMIT_CORE is 0 (soft = hard): it cannot be raised, and abort() leaves no core file. */
int main(void) {
    struct rlimit r = {RLIM_INFINITY, RLIM_INFINITY};
    MUST_FAIL("raise RLIMIT_CORE", setrlimit(RLIMIT_CORE, &r));
    fflush(stdout);
    abort();
}
