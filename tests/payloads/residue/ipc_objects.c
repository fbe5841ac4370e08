#include <mqueue.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
/* Leaves SysV shared memory, a semaphore set and a message queue (the test's key), a POSIX
 * shared memory object and message queue, and files in /tmp and /dev/shm, then exits. The step's
 * own IPC namespace and tmpfs mounts go with it: the test finds none of them on the host. */
int main(void) {
    readin();
    key_t key = (key_t)strtoul(arg("ipckey"), NULL, 10);
    const char *m = arg("marker");
    char name[300];
    if (shmget(key, 1 << 20, IPC_CREAT | 0666) < 0) leak("shmget failed");
    if (semget(key, 4, IPC_CREAT | 0666) < 0) leak("semget failed");
    int q = msgget(key, IPC_CREAT | 0666);
    struct { long t; char x[8]; } msg = {1, "residue"};
    if (q < 0 || msgsnd(q, &msg, sizeof msg.x, 0) < 0) leak("msgget failed");
    snprintf(name, sizeof name, "/%s", m);
    int fd = shm_open(name, O_CREAT | O_RDWR, 0666);
    if (fd < 0 || ftruncate(fd, 1 << 20) < 0) leak("shm_open failed");
    if (mq_open(name, O_CREAT | O_RDWR, 0666, NULL) == (mqd_t)-1) ok("mq_open refused");
    snprintf(name, sizeof name, "/tmp/%s", m);
    close(open(name, O_CREAT | O_WRONLY, 0666));
    snprintf(name, sizeof name, "/dev/shm/%s.file", m);
    close(open(name, O_CREAT | O_WRONLY, 0666));
    puts("DONE");
}
