# Other runs (the group runs many at once): only our own run directory is visible.
cwd = os.getcwd()
names = os.listdir("/home/jobe/runs")
for n in names:
    if n not in cwd:
        leak("another run is visible: " + n)
if len(names) == 1:
    ok("only our run directory is visible")
must_fail("list the host's runs directory", lambda: os.listdir(A["datadir"] + "/runs"))
print("DONE")
