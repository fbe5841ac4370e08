import helper
helper.go(3)
