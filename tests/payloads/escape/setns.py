# Enter another namespace: denied by seccomp (outcome 19).
syscall(308, os.open("/proc/self/ns/net", os.O_RDONLY), 0)  # setns
leak("setns returned")
print("DONE")
