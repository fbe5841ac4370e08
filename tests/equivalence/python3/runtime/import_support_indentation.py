print('importing')
import helper
