# A new user namespace (root inside it, the usual first step of a kernel exploit): denied by seccomp (outcome 19).
syscall(272, 0x10000000)  # unshare(CLONE_NEWUSER)
leak("unshare returned")
print("DONE")
