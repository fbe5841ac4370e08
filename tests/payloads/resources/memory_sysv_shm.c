#include <sys/ipc.h>
#include <sys/shm.h>
/* System V shared memory is charged to the cgroup that touches it. */
int main(void) {
    int id = shmget(IPC_PRIVATE, 1UL << 30, IPC_CREAT | 0600);
    if (id < 0) { perror("shmget"); return 1; }
    char *p = shmat(id, NULL, 0);
    if (p == (void *)-1) { perror("shmat"); return 1; }
    memset(p, 1, 1UL << 30);
    puts("DONE");
}
