import os, sys
print('partial')
sys.stdout.flush()
os.write(2, b'  File "__tester__.python3", line 3\n    (\n    ^\nSyntaxError: \'(\' was never closed\n')
os._exit(1)
