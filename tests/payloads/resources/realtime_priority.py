# A real-time or deadline scheduling class would let a spinner starve the host (the CPU budget is
# counted, but a SCHED_FIFO loop on every core stalls everything else until then). The jail sets
# RLIMIT_RTPRIO and RLIMIT_NICE to 0 whatever the daemon inherited (the test raises them in the
# daemon), and the program has no CAP_SYS_NICE.
import struct
must_fail("SCHED_FIFO", lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1)))
must_fail("SCHED_RR", lambda: os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1)))
attr = ctypes.create_string_buffer(struct.pack("IIQiIQQQ", 56, 6, 0, 0, 0, 10_000_000, 20_000_000, 20_000_000))
r, e = syscall(314, 0, ctypes.addressof(attr), 0)  # sched_setattr(SCHED_DEADLINE)
if r == 0:
    leak("SCHED_DEADLINE")
must_fail("nice -20", lambda: os.setpriority(os.PRIO_PROCESS, 0, -20))
must_fail("nice -1", lambda: os.setpriority(os.PRIO_PROCESS, 0, -1))
print("DONE")
