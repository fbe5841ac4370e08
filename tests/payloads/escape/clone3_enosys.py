# clone3 keeps its flags in memory seccomp cannot read, so the jail makes it fail with ENOSYS: a
# clone3 asking for a new user namespace gets ENOSYS, not a namespace.
import errno
args = (ctypes.c_uint64 * 8)(0x10000000, 0, 0, 0, 17, 0, 0, 0)  # CLONE_NEWUSER, SIGCHLD
r, e = syscall(435, ctypes.addressof(args), 64)
if r == 0:
    os._exit(0)
if r < 0 and e == errno.ENOSYS:
    ok("clone3 gives ENOSYS")
else:
    leak(f"clone3 returned {r} (errno {e})")
print("DONE")
