import helper
helper.f()
