buf = "e" * (1 << 16)
while True:
    sys.stderr.write(buf)
