/* Host secrets: /etc/shadow, the daemon's config (its host path and the installed one), the file
 * cache, the data directory, root's home. */
static void must_not_read(const char *p) {
    char w[1200];
    snprintf(w, sizeof w, "read %s", p);
    int fd = open(p, O_RDONLY);
    char buf[16];
    if (fd < 0 || read(fd, buf, sizeof buf) < 0) ok(w); else leak(w);
}
int main(void) {
    readin();
    must_not_read("/etc/shadow");
    must_not_read("/etc/gshadow");
    must_not_read("/etc/runner/runner.toml");
    must_not_read("/root/.bash_history");
    must_not_read("/root");
    char p[1100];
    must_not_read(arg("config"));
    must_not_read(arg("cachefile"));
    must_not_read(arg("datadir"));
    snprintf(p, sizeof p, "%s/files", arg("datadir"));
    must_not_read(p);
    snprintf(p, sizeof p, "%s/lock", arg("datadir"));
    must_not_read(p);
    puts("DONE");
}
