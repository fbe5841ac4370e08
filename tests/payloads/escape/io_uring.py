# io_uring (a large kernel attack surface that bypasses seccomp for its operations): denied by seccomp (outcome 19).
params = ctypes.create_string_buffer(120)
syscall(425, 8, ctypes.addressof(params))  # io_uring_setup
leak("io_uring_setup returned")
print("DONE")
