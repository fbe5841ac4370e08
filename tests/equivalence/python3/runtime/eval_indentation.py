exec('if 1:\nx = 1')
