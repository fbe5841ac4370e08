# Eight processes spinning: the CPU budget is the cgroup's, summed over all of them.
for i in range(8):
    if os.fork() == 0:
        break
while True:
    pass
