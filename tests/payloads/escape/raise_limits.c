#include <sys/resource.h>
#include <grp.h>
/* Hard limits cannot be raised; privileges cannot be regained. */
int main(void) {
    struct rlimit r = {RLIM_INFINITY, RLIM_INFINITY};
    MUST_FAIL("raise RLIMIT_CPU", setrlimit(RLIMIT_CPU, &r));
    MUST_FAIL("raise RLIMIT_FSIZE", setrlimit(RLIMIT_FSIZE, &r));
    MUST_FAIL("raise RLIMIT_NOFILE", setrlimit(RLIMIT_NOFILE, &r));
    MUST_FAIL("setuid(0)", setuid(0));
    MUST_FAIL("setgid(0)", setgid(0));
    MUST_FAIL("setgroups", setgroups(0, NULL));
    MUST_FAIL("sethostname", sethostname("x", 1));
    puts("DONE");
}
