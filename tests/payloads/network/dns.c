#include <netdb.h>
/* Name resolution of outside names fails (no network, no resolver). */
int main(void) {
    const char *names[] = {"example.com", "moodle.org", "pypi.org", NULL};
    for (int i = 0; names[i]; i++) {
        struct addrinfo *r;
        if (getaddrinfo(names[i], "80", NULL, &r) == 0) printf("LEAK resolved %s\n", names[i]);
        else printf("OK resolve %s\n", names[i]);
    }
    puts("DONE");
}
