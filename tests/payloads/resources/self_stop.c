/* The program and a child stop themselves (SIGSTOP): no CPU is used, the wall clock ends the
 * run, and the kill reaches stopped processes. */
int main(void) {
    fflush(stdout);
    if (fork() == 0) raise(SIGSTOP);
    raise(SIGSTOP);
    puts("DONE");
}
