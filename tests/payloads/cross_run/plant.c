#include <netinet/in.h>
#include <stddef.h>
#include <sys/ipc.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/prctl.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
/* Run A of a slot: leaves everything it can for the next run on the same slot (cross_run/check
 * looks for it): SysV IPC, files in /tmp, /dev/shm, $HOME and beside the run directory, a startup
 * file, a background process, sockets of the slot's network namespace (which outlives the run)
 * kept alive in flight. */
/* Keeps sockets alive after the run by an SCM_RIGHTS cycle (each in flight inside its own queue):
 * an abstract unix name and a UDP port of the slot's network namespace (which outlives the run). */
static void in_flight(int u, int d) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0) return;
    int fds[4] = {u, d, sv[0], sv[1]};
    char cbuf[CMSG_SPACE(sizeof fds)];
    for (int i = 0; i < 2; i++) {
        struct iovec io = {"x", 1};
        struct msghdr mh = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; c->cmsg_len = CMSG_LEN(sizeof fds);
        memcpy(CMSG_DATA(c), fds, sizeof fds);
        if (sendmsg(sv[i], &mh, 0) < 0) perror("sendmsg");
    }
}
int main(void) {
    readin();
    key_t key = (key_t)strtoul(arg("ipckey"), NULL, 10) + 2;
    const char *m = arg("marker");
    char p[600];
    shmget(key, 4096, IPC_CREAT | 0666);
    semget(key, 1, IPC_CREAT | 0666);
    msgget(key, IPC_CREAT | 0666);
    const char *dirs[] = {"/tmp", "/dev/shm", getenv("HOME"), "..", "/home/jobe", "/var/tmp", NULL};
    for (int i = 0; dirs[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", dirs[i], m);
        close(open(p, O_CREAT | O_WRONLY, 0666));
    }
    snprintf(p, sizeof p, "%s/.profile", getenv("HOME"));
    FILE *f = fopen(p, "w");
    if (f) { fprintf(f, "export PLANTED=%s\n", m); fclose(f); }
    if (fork() == 0) {
        setsid();
        signal(SIGTERM, SIG_IGN);
        snprintf(p, sizeof p, "%s-sleeper", m);
        prctl(15 /* PR_SET_NAME */, "planted", 0, 0, 0);
        for (;;) pause();
    }
    int u = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un ua = {.sun_family = AF_UNIX};
    strncpy(ua.sun_path + 1, m, sizeof ua.sun_path - 2);
    if (bind(u, (void *)&ua, offsetof(struct sockaddr_un, sun_path) + 1 + strlen(m)) < 0 || listen(u, 1) < 0) perror("abstract");
    int d = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in da = {.sin_family = AF_INET, .sin_port = htons(40000 + strtoul(arg("ipckey"), NULL, 10) % 20000)};
    if (bind(d, (void *)&da, sizeof da) < 0) perror("udp");
    in_flight(u, d);
    puts("DONE");
}
