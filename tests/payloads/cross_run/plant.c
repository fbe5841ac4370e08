#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
/* Run A of a slot: leaves everything it can for the next run on the same slot (cross_run/check
 * looks for it): SysV IPC, files in /tmp, /dev/shm, $HOME and beside the run directory, a startup
 * file, a background process. */
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
    puts("DONE");
}
