# Empty files in the private /tmp (a tmpfs without an inode cap of its own): each inode and dentry
# is kernel memory charged to the job, so the memory limit ends it.
n = 0
try:
    while n < 2_000_000:
        os.close(os.open(f"/tmp/{n}", os.O_CREAT | os.O_WRONLY, 0o600))
        n += 1
except OSError:
    print("FILES", n)
print("DONE")
