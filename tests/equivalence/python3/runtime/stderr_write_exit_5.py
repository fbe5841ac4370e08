import sys
sys.stderr.write('bad\n')
sys.exit(5)
