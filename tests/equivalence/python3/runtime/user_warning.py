import warnings
warnings.warn('custom warning')
print('after')
