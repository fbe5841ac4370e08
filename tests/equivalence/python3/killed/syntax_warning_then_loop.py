x = 1
if x is 1:
    pass
while True:
    pass
