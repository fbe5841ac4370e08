print('output first')
print(1 is 1)
1 / 0
