/* Children that exit and are never waited for, until fork fails. */
int main(void) {
    long n = 0;
    for (;;) {
        pid_t p = fork();
        if (p == 0) _exit(0);
        if (p < 0) break;
        n++;
    }
    printf("ZOMBIES %ld\nDONE\n", n);
}
