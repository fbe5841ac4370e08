#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
/* Unix sockets of host services: a listener of the test on a filesystem path and on an
 * abstract name (abstract names belong to the network namespace), the usual system sockets. */
static void try_unix(const char *path, int abstract) {
    char w[300];
    snprintf(w, sizeof w, "connect unix %s%s", abstract ? "@" : "", path);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path + abstract, path, sizeof a.sun_path - 2);
    socklen_t len = offsetof(struct sockaddr_un, sun_path) + abstract + strlen(path) + !abstract;
    MUST_FAIL(w, connect(s, (void *)&a, len));
    close(s);
}
int main(void) {
    readin();
    try_unix(arg("unix"), 0);
    try_unix(arg("abstract"), 1);
    const char *sys[] = {"/run/dbus/system_bus_socket", "/var/run/docker.sock", "/run/systemd/private",
                         "/run/systemd/journal/socket", "/run/systemd/notify", "/dev/log", NULL};
    for (int i = 0; sys[i]; i++) try_unix(sys[i], 0);
    try_unix("/org/freedesktop/systemd1/notify", 1);
    puts("DONE");
}
