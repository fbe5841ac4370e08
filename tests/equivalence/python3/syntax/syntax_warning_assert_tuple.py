x = 0
assert (x, 'message')
print('ran')
