/* A syscall through the i386 ABI (int 0x80) slips past filters written for x86_64 numbers; the
 * jail's filter kills the process for a foreign architecture (SIGSYS, outcome 12). */
int main(void) {
    fflush(stdout);
#if defined(__x86_64__)
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory"); /* i386 getpid */
    leak("the i386 ABI ran");
#else
    raise(SIGSYS);
#endif
    puts("DONE");
}
