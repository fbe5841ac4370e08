def f():
	if 1:
        pass
	return 1
