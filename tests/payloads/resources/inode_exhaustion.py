# Empty files until the run directory has no inodes left (capped at 40000).
n = 0
try:
    while n < 40000:
        os.close(os.open(f"i{n}", os.O_CREAT | os.O_WRONLY, 0o600))
        n += 1
except OSError:
    pass
print("FILES", n)
print("DONE")
