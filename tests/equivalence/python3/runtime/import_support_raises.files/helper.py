raise ValueError('at import')
