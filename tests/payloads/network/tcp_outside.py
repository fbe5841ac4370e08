# TCP to outside addresses: the host's own address, the Internet.
import socket
for host, port in [(A["hostip"], int(A["tcp"])), ("1.1.1.1", 80), ("8.8.8.8", 443), ("192.0.2.1", 22)]:
    def go():
        with socket.create_connection((host, port), timeout=2):
            pass
    must_fail(f"connect {host} port {port}", go)
print("DONE")
