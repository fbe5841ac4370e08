#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
/* Payload protocol (README.md): stdin holds "key=value" words from the test; print "OK <what>"
 * for an attempt that was refused, "LEAK <what>" for one that got through, "DONE" at the end. */
static char in_[8192];
static void readin(void) { size_t n = fread(in_, 1, sizeof in_ - 1, stdin); in_[n] = 0; }
static const char *arg(const char *k) { /* a new copy each call */
    char v[1024];
    size_t n = strlen(k);
    v[0] = 0;
    for (char *p = in_; (p = strstr(p, k)); p += n)
        if ((p == in_ || p[-1] == ' ' || p[-1] == '\n') && p[n] == '=') { sscanf(p + n + 1, "%1023s", v); break; }
    return strdup(v);
}
static void ok(const char *w) { printf("OK %s (%s)\n", w, strerror(errno)); }
static void leak(const char *w) { printf("LEAK %s\n", w); }
/* The call must fail: OK if it did, LEAK if it did not. */
#define MUST_FAIL(what, expr) do { errno = 0; if ((long)(expr) < 0) ok(what); else leak(what); } while (0)
