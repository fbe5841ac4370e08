# Unix sockets of host services: a listener of the test on a filesystem path and on an abstract
# name (abstract names belong to the network namespace), the usual system sockets.
import socket
for path in [A["unix"], "\0" + A["abstract"], "/run/dbus/system_bus_socket", "/var/run/docker.sock",
             "/run/systemd/private", "/run/systemd/journal/socket", "/run/systemd/notify", "/dev/log",
             "\0/org/freedesktop/systemd1/notify"]:
    def go():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
    must_fail("connect unix " + path.replace("\0", "@"), go)
print("DONE")
