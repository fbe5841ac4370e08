print(__file__.rsplit('/', 1)[1])
