# userfaultfd (stalls the kernel at will: a classic exploit aid): denied by seccomp (outcome 19).
syscall(323, 0)  # userfaultfd
leak("userfaultfd returned")
print("DONE")
