/* Signals to the daemon (its host pid), to init, and to everything (-1): none may reach
 * outside the job. */
int main(void) {
    readin();
    pid_t daemon = atoi(arg("pid"));
    MUST_FAIL("kill(daemon pid, SIGKILL)", kill(daemon, SIGKILL));
    MUST_FAIL("kill(init, SIGKILL)", kill(1, SIGKILL));
    MUST_FAIL("kill(init, SIGTERM)", kill(1, SIGTERM));
    MUST_FAIL("pidfd_open(daemon pid)", syscall(SYS_pidfd_open, daemon, 0));
    MUST_FAIL("kill(-daemon pgrp, SIGKILL)", kill(-daemon, SIGKILL));
    /* kill(-1) signals every process we may signal except ourselves: ignore it here. */
    signal(SIGTERM, SIG_IGN);
    kill(-1, SIGTERM);
    for (pid_t p = 1; p < 4096; p++)
        if (p != getpid() && kill(p, 0) == 0 && p != 1) { printf("LEAK can signal pid %d\n", p); }
    puts("DONE");
}
