# A setuid-root binary (su, waiting for a password on a pipe) must not run with euid 0: the system
# paths are nosuid and no_new_privs is set.
import subprocess, time
if libc.prctl(39, 0, 0, 0, 0) == 1:  # PR_GET_NO_NEW_PRIVS
    ok("no_new_privs")
else:
    leak("no_new_privs unset")
if os.statvfs("/usr/bin/su").f_flag & os.ST_NOSUID:
    ok("/usr/bin nosuid")
else:
    leak("/usr/bin not nosuid")
p = subprocess.Popen(["/usr/bin/su", "root", "-c", "id"], stdin=subprocess.PIPE,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
seen = False
for i in range(50):
    try:
        for line in open(f"/proc/{p.pid}/status"):
            if line.startswith("Uid:"):
                seen = True
                if line.split()[2] == "0":
                    leak("su runs with euid 0")
    except OSError:
        break
    time.sleep(0.01)
if seen:
    ok("su ran without euid 0")
p.kill()
p.wait()
print("DONE")
