# Raw and packet sockets need CAP_NET_RAW; lo cannot be brought up without CAP_NET_ADMIN.
import socket, fcntl, struct
must_fail("raw socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
must_fail("packet socket", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
req = struct.pack("16sH22x", b"lo", 0)
flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, req))[1]  # SIOCGIFFLAGS
if flags & 1:
    leak("lo is up")
must_fail("bring lo up", lambda: fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1)))
print("DONE")
