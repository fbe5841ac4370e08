import sys
print('started', flush=True)
sys.stderr.write('noise\n')
while True:
    pass
