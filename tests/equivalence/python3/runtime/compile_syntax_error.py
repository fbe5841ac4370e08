compile('def f(:', 'generated', 'exec')
