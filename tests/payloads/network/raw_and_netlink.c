#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <netinet/in.h>
/* Raw and packet sockets need CAP_NET_RAW; lo cannot be brought up without CAP_NET_ADMIN. */
int main(void) {
    MUST_FAIL("raw socket", socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    MUST_FAIL("packet socket", socket(AF_PACKET, SOCK_RAW, 0));
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq r = {0};
    strcpy(r.ifr_name, "lo");
    ioctl(s, SIOCGIFFLAGS, &r);
    if (r.ifr_flags & IFF_UP) leak("lo is up");
    r.ifr_flags |= IFF_UP;
    MUST_FAIL("bring lo up", ioctl(s, SIOCSIFFLAGS, &r));
    puts("DONE");
}
