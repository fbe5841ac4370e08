# Links the daemon must never follow when it reads results or removes the run directory:
# symlinks to host paths (the canary directory, /, the data directory), under the names of files
# profiles read (prog.err, prog.o), a FIFO, a directory of mode 000, the run directory itself
# made unwritable; hard links to files outside (EXDEV: another filesystem).
os.symlink(A["canary"], "link_canary")
os.symlink(A["canary"] + "/canary.txt", "prog.err")
os.symlink("/", "link_root")
os.symlink(A["datadir"], "link_datadir")
os.symlink(A["canary"], "prog.o")
os.mkfifo("fifo.err")
os.mkdir("locked")
os.symlink(A["canary"], "locked/inner")
os.chmod("locked", 0)
must_fail("hard link /etc/passwd", lambda: os.link("/etc/passwd", "passwd"))
must_fail("hard link /etc/shadow", lambda: os.link("/etc/shadow", "shadow"))
open("/tmp/x", "w").close()
must_fail("hard link /tmp file", lambda: os.link("/tmp/x", "tmpx"))
os.chmod(".", 0o500)
print("DONE")
