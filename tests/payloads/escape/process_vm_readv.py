# Read init's memory: denied by seccomp (outcome 19).
buf = ctypes.create_string_buffer(64)
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
l = iovec(ctypes.cast(buf, ctypes.c_void_p), 64)
r = iovec(0x400000, 64)
syscall(310, 1, ctypes.addressof(l), 1, ctypes.addressof(r), 1, 0)
leak("process_vm_readv returned")
print("DONE")
