import warnings
warnings.warn('first')
1 / 0
