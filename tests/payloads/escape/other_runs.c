#include <dirent.h>
/* Other runs (the group runs many at once): only our own run directory is visible. */
int main(void) {
    readin();
    char cwd[512];
    getcwd(cwd, sizeof cwd);
    DIR *d = opendir("/home/jobe/runs");
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            n++;
            if (!strstr(cwd, e->d_name)) printf("LEAK another run is visible: %s\n", e->d_name);
        }
    if (n == 1) ok("only our run directory is visible");
    char p[1100];
    snprintf(p, sizeof p, "%s/runs", arg("datadir"));
    MUST_FAIL("open the host's runs directory", open(p, O_RDONLY | O_DIRECTORY));
    puts("DONE");
}
