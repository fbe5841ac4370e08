print('before')
return 5
