/* Eight processes spinning: the CPU budget is the cgroup's, summed over all of them. */
int main(void) {
    for (int i = 0; i < 8; i++) if (fork() == 0) break;
    for (volatile unsigned long x = 0;; x++) {}
}
