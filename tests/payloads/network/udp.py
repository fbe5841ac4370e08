# UDP datagrams to the test's socket (loopback and the host's address) and to a public DNS server:
# sendto fails (no route), nothing arrives (the test checks its socket).
import socket
for host, port in [("127.0.0.1", int(A["udp"])), (A["hostip"], int(A["udp"])), ("8.8.8.8", 53)]:
    def go():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"x", (host, port))
    must_fail(f"sendto {host} port {port}", go)
print("DONE")
