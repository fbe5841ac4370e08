import helper
helper.check('b')
while True:
    pass
