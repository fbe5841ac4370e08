import sys
print('usage: prog', file=sys.stderr)
raise SystemExit(2)
