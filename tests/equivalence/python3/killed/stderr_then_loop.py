import sys
sys.stderr.write('working\n')
while True:
    pass
