#include <sys/socket.h>
/* Kernel memory: unix datagram socket pairs with full send queues (about 200 KB each, up to
 * 4000 pairs). Socket buffers are charged to the job's memory cgroup like its own pages. */
int main(void) {
    static char buf[65000];
    long total = 0, pairs = 0;
    int sv[2];
    while (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv) == 0) {
        pairs++;
        while (send(sv[0], buf, sizeof buf, 0) > 0) total += sizeof buf;
    }
    printf("PAIRS %ld\nQUEUED %ld\nDONE\n", pairs, total);
}
