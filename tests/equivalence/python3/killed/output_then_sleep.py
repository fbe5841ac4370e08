print('waiting', flush=True)
import time
time.sleep(60)
