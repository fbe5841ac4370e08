# Children that exit and are never waited for, until fork fails.
n = 0
while True:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        os._exit(0)
    n += 1
print("ZOMBIES", n)
print("DONE")
