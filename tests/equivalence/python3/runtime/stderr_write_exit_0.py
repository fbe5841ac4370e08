import sys
print('out')
sys.stderr.write('warning: careful\n')
