/* The environment is exactly the profile's: nothing of the daemon's (its test harness runs with
 * CARGO_*, RUST_*, HOME=/root, maybe NOTIFY_SOCKET or SUDO_*) reaches the program. */
extern char **environ;
int main(void) {
    const char *allowed[] = {"PATH=", "LANG=", "HOME=/home/jobe/runs/", "TMPDIR=/home/jobe/runs/",
                             "OPENBLAS_NUM_THREADS=", "MPLCONFIGDIR=/home/jobe/runs/", NULL};
    for (char **e = environ; *e; e++) {
        int ok_ = 0;
        for (int i = 0; allowed[i]; i++) if (strncmp(*e, allowed[i], strlen(allowed[i])) == 0) ok_ = 1;
        if (!ok_) printf("LEAK environment %s\n", *e);
    }
    puts("DONE");
}
