# NUL bytes, invalid UTF-8 and control characters on stdout and stderr: the daemon must still
# answer with valid JSON (outcome 12: stderr is not empty).
junk = b"a\0b\xff\xfe\xc3\x28\xed\xa0\x80\x1b[2J\r\n\"\\</script>"
sys.stdout.buffer.write(junk + bytes(range(256)))
sys.stderr.buffer.write(junk + bytes(range(256)))
sys.stdout.buffer.write(b"\nDONE\n")
