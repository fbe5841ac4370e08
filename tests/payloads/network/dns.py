# Name resolution of outside names fails (no network, no resolver).
import socket
for name in ["example.com", "moodle.org", "pypi.org"]:
    try:
        socket.getaddrinfo(name, 80)
        leak("resolved " + name)
    except OSError as e:
        ok("resolve " + name, str(e))
print("DONE")
