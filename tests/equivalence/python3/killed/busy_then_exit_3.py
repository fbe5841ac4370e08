import time
t = time.process_time()
while time.process_time() - t < 0.15:
    pass
import os
os._exit(3)
