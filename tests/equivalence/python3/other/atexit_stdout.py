import atexit
atexit.register(lambda: print('bye'))
print('hi')
