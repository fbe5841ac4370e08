# The program installs its own allow-everything seccomp filter on top of the jail's, then calls
# ptrace: filters stack and the strictest answer wins, so the jail still stops it (19).
class sock_filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]
class sock_fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(sock_filter))]
allow = (sock_filter * 1)(sock_filter(0x06, 0, 0, 0x7FFF0000))  # BPF_RET|BPF_K, SECCOMP_RET_ALLOW
prog = sock_fprog(1, allow)
if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    print("own filter refused", ctypes.get_errno(), file=sys.stderr)
syscall(101, 0, 0, 0, 0)  # ptrace(PTRACE_TRACEME)
leak("ptrace returned")
print("DONE")
