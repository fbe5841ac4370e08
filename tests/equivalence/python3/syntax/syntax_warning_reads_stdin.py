line = input()
print(line is 'x', line)
