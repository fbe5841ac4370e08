assert False, 'assertion message'
