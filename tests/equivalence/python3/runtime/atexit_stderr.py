import atexit, sys
atexit.register(lambda: sys.stderr.write('atexit ran\n'))
sys.exit(0)
