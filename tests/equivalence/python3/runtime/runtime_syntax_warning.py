c = compile('x = 1\nprint(x is 1)', 'gen', 'exec')
exec(c)
