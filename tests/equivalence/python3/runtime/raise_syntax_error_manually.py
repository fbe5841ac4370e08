raise SyntaxError('not really')
