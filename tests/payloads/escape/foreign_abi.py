# A syscall through the x32 ABI (number | 0x40000000) slips past filters written for x86_64
# numbers; the jail's filter kills the process (SIGSYS, outcome 12).
import platform, signal
sys.stdout.flush()
if platform.machine() == "x86_64":
    syscall(0x40000000 | 39)  # x32 getpid
    leak("the x32 ABI ran")
else:
    os.kill(os.getpid(), signal.SIGSYS)
print("DONE")
