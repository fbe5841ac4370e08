/* A daemonised grandchild (fork, setsid, fork) that tries to outlive the run and, later, to
 * write into the host's canary directory. The run's end must kill it. */
int main(void) {
    readin();
    if (fork() == 0) {
        setsid();
        signal(SIGHUP, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        if (fork() == 0) {
            for (int i = 0; i < 600; i++) {
                char p[2048];
                snprintf(p, sizeof p, "%s/%s", arg("canary"), arg("marker"));
                int fd = open(p, O_CREAT | O_WRONLY, 0644);
                if (fd >= 0) close(fd);
                sleep(1);
            }
            _exit(0);
        }
        _exit(0);
    }
    wait(NULL);
    puts("DONE");
}
