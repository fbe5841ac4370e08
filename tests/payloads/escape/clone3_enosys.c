/* clone3 keeps its flags in memory seccomp cannot read, so the jail makes it fail with ENOSYS:
 * a clone3 asking for a new user namespace gets ENOSYS, not a namespace. */
struct clone_args_ { unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls; };
int main(void) {
    struct clone_args_ a = {.flags = 0x10000000 /* CLONE_NEWUSER */, .exit_signal = SIGCHLD};
    errno = 0;
    long r = syscall(SYS_clone3, &a, sizeof a);
    if (r == 0) _exit(0);
    if (r < 0 && errno == ENOSYS) ok("clone3 gives ENOSYS");
    else printf("LEAK clone3 returned %ld (errno %d)\n", r, errno);
    puts("DONE");
}
