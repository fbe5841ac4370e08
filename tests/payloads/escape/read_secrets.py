# Host secrets: /etc/shadow, the daemon's config (its host path and the installed one), the file
# cache, the data directory, root's home.
def read(p):
    if os.path.isdir(p):
        return os.listdir(p)
    with open(p, "rb") as f:
        return f.read(16)
for p in ["/etc/shadow", "/etc/gshadow", "/etc/runner/runner.toml", "/root/.bash_history", "/root",
          A["config"], A["cachefile"], A["datadir"], A["datadir"] + "/files", A["datadir"] + "/lock"]:
    must_fail("read " + p, lambda: read(p))
print("DONE")
