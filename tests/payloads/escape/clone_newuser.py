# clone() with CLONE_NEWUSER: denied by seccomp (outcome 19).
syscall(56, 0x10000000 | 17, 0, 0, 0, 0)  # clone(CLONE_NEWUSER | SIGCHLD)
leak("clone returned")
print("DONE")
