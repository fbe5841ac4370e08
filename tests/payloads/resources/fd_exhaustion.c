#include <sys/resource.h>
int main(void) {
    struct rlimit r = {1 << 20, 1 << 20};
    MUST_FAIL("raise RLIMIT_NOFILE", setrlimit(RLIMIT_NOFILE, &r));
    long n = 0;
    while (open("/dev/null", O_RDONLY) >= 0) n++;
    printf("FDS %ld\nDONE\n", n);
}
