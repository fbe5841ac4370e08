import sys
sys.stderr.write('Traceback (most recent call last):\nSyntaxError: invalid syntax\n')
sys.exit(1)
