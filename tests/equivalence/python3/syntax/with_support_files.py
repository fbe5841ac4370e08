import helper
x = (
