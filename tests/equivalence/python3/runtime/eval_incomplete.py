print(eval('1 +'))
