/* A setuid-root binary (su, waiting for a password on a pipe) must not run with euid 0: the
 * system paths are nosuid and no_new_privs is set. */
#include <sys/prctl.h>
#include <sys/statvfs.h>
int main(void) {
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1) ok("no_new_privs"); else leak("no_new_privs unset");
    struct statvfs v;
    if (statvfs("/usr/bin/su", &v) == 0 && (v.f_flag & ST_NOSUID)) ok("/usr/bin nosuid"); else leak("/usr/bin not nosuid");
    int in[2];
    pipe(in);
    pid_t c = fork();
    if (c == 0) {
        dup2(in[0], 0);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1); dup2(null, 2);
        execl("/usr/bin/su", "su", "root", "-c", "id", (char *)NULL);
        _exit(127);
    }
    int seen = 0;
    for (int i = 0; i < 50; i++) {
        char p[64], buf[4096];
        snprintf(p, sizeof p, "/proc/%d/status", c);
        FILE *f = fopen(p, "r");
        if (!f) break;
        while (fgets(buf, sizeof buf, f)) {
            unsigned r, e;
            if (sscanf(buf, "Uid: %u %u", &r, &e) == 2) { seen = 1; if (e == 0) leak("su runs with euid 0"); }
        }
        fclose(f);
        usleep(10000);
    }
    kill(c, SIGKILL);
    waitpid(c, NULL, 0);
    if (seen) ok("su ran without euid 0");
    puts("DONE");
}
