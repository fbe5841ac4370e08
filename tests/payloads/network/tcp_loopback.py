# TCP to the host's loopback: a listener of the test, the daemon's own port; IPv4 and IPv6. The
# slot's network namespace has only lo, which is down; Landlock (ABI >= 4) denies connect too.
import socket
for host, fam in [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)]:
    for port in [int(A["tcp"]), int(A["port"])]:
        def go():
            with socket.socket(fam, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect((host, port))
        must_fail(f"connect {host} port {port}", go)
print("DONE")
