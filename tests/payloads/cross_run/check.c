#include <dirent.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
/* Run B on the same slot: nothing of run A (cross_run/plant) may be visible. */
int main(void) {
    readin();
    key_t key = (key_t)strtoul(arg("ipckey"), NULL, 10) + 2;
    const char *m = arg("marker");
    char p[600];
    MUST_FAIL("SysV shm of run A", shmget(key, 0, 0));
    MUST_FAIL("SysV sem of run A", semget(key, 0, 0));
    MUST_FAIL("SysV msg of run A", msgget(key, 0));
    const char *dirs[] = {"/tmp", "/dev/shm", getenv("HOME"), "..", "/home/jobe", "/var/tmp", NULL};
    for (int i = 0; dirs[i]; i++) {
        snprintf(p, sizeof p, "%s/%s of run A", dirs[i], m);
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dirs[i], m);
        MUST_FAIL(p, open(path, O_RDONLY));
    }
    snprintf(p, sizeof p, "%s/.profile", getenv("HOME"));
    MUST_FAIL("$HOME/.profile of run A", open(p, O_RDONLY));
    for (char **e = environ; *e; e++) if (strstr(*e, m)) printf("LEAK environment %s\n", *e);
    DIR *d = opendir("/proc");
    struct dirent *e;
    while ((e = readdir(d)))
        if (atoi(e->d_name) > 0 && atoi(e->d_name) != getpid()) printf("LEAK process %s of run A\n", e->d_name);
    d = opendir("/tmp");
    while ((e = readdir(d))) if (e->d_name[0] != '.') printf("LEAK /tmp/%s\n", e->d_name);
    int u = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un ua = {.sun_family = AF_UNIX};
    strncpy(ua.sun_path + 1, m, sizeof ua.sun_path - 2);
    if (bind(u, (void *)&ua, offsetof(struct sockaddr_un, sun_path) + 1 + strlen(m)) < 0) leak("abstract socket of run A still bound");
    int ud = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in da = {.sin_family = AF_INET, .sin_port = htons(40000 + strtoul(arg("ipckey"), NULL, 10) % 20000)};
    if (bind(ud, (void *)&da, sizeof da) < 0) leak("UDP port of run A still bound");
    puts("DONE");
}
