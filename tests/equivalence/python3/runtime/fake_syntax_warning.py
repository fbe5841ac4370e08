import sys
sys.stderr.write('__tester__.python3:1: SyntaxWarning: "is" with a literal. Did you mean "=="?\n')
