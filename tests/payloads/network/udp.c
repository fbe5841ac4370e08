#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
/* UDP datagrams to the test's socket (loopback and the host's address) and to a public DNS
 * server: sendto fails (no route), nothing arrives (the test checks its socket). */
int main(void) {
    readin();
    const char *ips[] = {"127.0.0.1", arg("hostip"), "8.8.8.8", NULL};
    int ports[] = {atoi(arg("udp")), atoi(arg("udp")), 53};
    for (int i = 0; ips[i]; i++) {
        char w[128];
        snprintf(w, sizeof w, "sendto %s port %d", ips[i], ports[i]);
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(ports[i])};
        inet_pton(AF_INET, ips[i], &a.sin_addr);
        MUST_FAIL(w, sendto(s, "x", 1, 0, (void *)&a, sizeof a));
        close(s);
    }
    puts("DONE");
}
