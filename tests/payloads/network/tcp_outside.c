#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
/* TCP to outside addresses: the host's own address, the Internet. */
int main(void) {
    readin();
    const char *ips[] = {arg("hostip"), "1.1.1.1", "8.8.8.8", "192.0.2.1", NULL};
    int ports[] = {atoi(arg("tcp")), 80, 443, 22};
    for (int i = 0; ips[i]; i++) {
        char w[128];
        snprintf(w, sizeof w, "connect %s port %d", ips[i], ports[i]);
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(ports[i])};
        inet_pton(AF_INET, ips[i], &a.sin_addr);
        MUST_FAIL(w, connect(s, (void *)&a, sizeof a));
        close(s);
    }
    puts("DONE");
}
