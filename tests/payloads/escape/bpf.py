# Load eBPF: denied by seccomp (outcome 19).
attr = ctypes.create_string_buffer(128)
syscall(321, 0, ctypes.addressof(attr), 128)  # bpf(BPF_MAP_CREATE)
leak("bpf returned")
print("DONE")
