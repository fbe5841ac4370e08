# open_by_handle_at (the "shocker" container escape: open host files by handle): denied by seccomp (outcome 19).
h = ctypes.create_string_buffer(b"\x08\0\0\0\x01", 136)
syscall(304, -100, ctypes.addressof(h), 0)  # open_by_handle_at
leak("open_by_handle_at returned")
print("DONE")
