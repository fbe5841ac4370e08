/* Links the daemon must never follow when it reads results or removes the run directory:
 * symlinks to host paths (the canary directory, /, the data directory), under the names of files
 * profiles read (prog.err, prog.o, __tester__.c.exe), a FIFO, a directory of mode 000, the run
 * directory itself made unwritable; hard links to files outside (EXDEV: another filesystem). */
int main(void) {
    readin();
    char p[1100];
    snprintf(p, sizeof p, "%s/canary.txt", arg("canary"));
    symlink(arg("canary"), "link_canary");
    symlink(p, "prog.err");
    symlink("/", "link_root");
    symlink(arg("datadir"), "link_datadir");
    symlink(arg("canary"), "prog.o");
    unlink("__tester__.c.exe");
    symlink(arg("canary"), "__tester__.c.exe");
    mkfifo("fifo.err", 0666);
    mkdir("locked", 0755);
    symlink(arg("canary"), "locked/inner");
    chmod("locked", 0);
    MUST_FAIL("hard link /etc/passwd", link("/etc/passwd", "passwd"));
    MUST_FAIL("hard link /etc/shadow", link("/etc/shadow", "shadow"));
    MUST_FAIL("hard link /tmp file", (close(open("/tmp/x", O_CREAT | O_WRONLY, 0600)), link("/tmp/x", "tmpx")));
    chmod(".", 0500);
    puts("DONE");
}
