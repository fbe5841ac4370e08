# perf events (side channels, kernel attack surface): denied by seccomp (outcome 19).
attr = ctypes.create_string_buffer(128)
syscall(298, ctypes.addressof(attr), 0, -1, -1, 0)  # perf_event_open
leak("perf_event_open returned")
print("DONE")
