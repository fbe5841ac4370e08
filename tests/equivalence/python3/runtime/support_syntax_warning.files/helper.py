X = 1 is 1
