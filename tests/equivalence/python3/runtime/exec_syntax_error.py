exec('x y')
