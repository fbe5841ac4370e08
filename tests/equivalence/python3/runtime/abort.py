import os, sys
print('before abort')
sys.stdout.flush()
os.abort()
