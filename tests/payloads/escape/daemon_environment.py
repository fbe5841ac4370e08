# The environment is exactly the profile's: nothing of the daemon's (its test harness runs with
# CARGO_*, RUST_*, HOME=/root, maybe NOTIFY_SOCKET or SUDO_*) reaches the program.
allowed = ["PATH=", "LANG=", "HOME=/home/jobe/runs/", "TMPDIR=/home/jobe/runs/",
           "OPENBLAS_NUM_THREADS=", "MPLCONFIGDIR=/home/jobe/runs/"]
for k, v in os.environ.items():
    kv = f"{k}={v}"
    # LC_CTYPE is set by Python itself (PEP 538 locale coercion) when LANG is C.
    if not any(kv.startswith(a) for a in allowed) and k != "LC_CTYPE":
        leak("environment " + kv)
print("DONE")
