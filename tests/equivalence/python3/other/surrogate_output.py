print('\udcff')
