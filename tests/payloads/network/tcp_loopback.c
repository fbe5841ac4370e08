#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
/* TCP to the host's loopback: a listener of the test, the daemon's own port; IPv4 and IPv6. The
 * slot's network namespace has only lo, which is down; Landlock (ABI >= 4) denies connect too. */
static void try_connect(const char *ip, int port) {
    char w[128];
    snprintf(w, sizeof w, "connect %s port %d", ip, port);
    int v6 = strchr(ip, ':') != NULL;
    int s = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    if (s < 0) { ok(w); return; }
    struct sockaddr_storage a = {0};
    socklen_t len;
    if (v6) {
        struct sockaddr_in6 *a6 = (void *)&a;
        a6->sin6_family = AF_INET6; a6->sin6_port = htons(port); inet_pton(AF_INET6, ip, &a6->sin6_addr); len = sizeof *a6;
    } else {
        struct sockaddr_in *a4 = (void *)&a;
        a4->sin_family = AF_INET; a4->sin_port = htons(port); inet_pton(AF_INET, ip, &a4->sin_addr); len = sizeof *a4;
    }
    MUST_FAIL(w, connect(s, (void *)&a, len));
    close(s);
}
int main(void) {
    readin();
    try_connect("127.0.0.1", atoi(arg("tcp")));
    try_connect("127.0.0.1", atoi(arg("port")));
    try_connect("::1", atoi(arg("tcp")));
    try_connect("::1", atoi(arg("port")));
    /* Bringing lo up needs CAP_NET_ADMIN: a listener of our own on it is all we could reach. */
    puts("DONE");
}
