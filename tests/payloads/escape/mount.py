# Mount a filesystem: denied by seccomp (outcome 19).
syscall(165, ctypes.addressof(ctypes.create_string_buffer(b"none")), ctypes.addressof(ctypes.create_string_buffer(b"/tmp")), ctypes.addressof(ctypes.create_string_buffer(b"tmpfs")), 0, 0)
leak("mount returned")
print("DONE")
