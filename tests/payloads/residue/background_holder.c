#include <sys/ipc.h>
#include <sys/shm.h>
/* A background process that holds a SysV segment and a /dev/shm file open, ignores SIGTERM and
 * SIGHUP, and sleeps while the program itself exits at once. */
int main(void) {
    readin();
    key_t key = (key_t)strtoul(arg("ipckey"), NULL, 10) + 1;
    if (fork() == 0) {
        setsid();
        signal(SIGTERM, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        int id = shmget(key, 1 << 20, IPC_CREAT | 0666);
        void *p = shmat(id, NULL, 0);
        (void)p;
        char name[300];
        snprintf(name, sizeof name, "/dev/shm/%s.held", arg("marker"));
        int fd = open(name, O_CREAT | O_RDWR, 0666);
        (void)fd;
        for (;;) pause();
    }
    puts("DONE");
}
