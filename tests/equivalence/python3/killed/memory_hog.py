chunks = []
while True:
    chunks.append(b'x' * 10**6)
