buf = "x" * (1 << 16)
while True:
    sys.stdout.write(buf)
