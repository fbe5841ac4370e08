import sys
sys.stderr.write('  File "prog.py", line 1\n    x y\n      ^\nSyntaxError: invalid syntax\n')
sys.exit(1)
