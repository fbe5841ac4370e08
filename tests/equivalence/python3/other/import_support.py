import helper
print(helper.double(21))
