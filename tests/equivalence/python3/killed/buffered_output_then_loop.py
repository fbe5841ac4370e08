print('lost when killed')
while True:
    pass
