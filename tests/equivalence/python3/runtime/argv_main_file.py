import sys, os
print(sys.argv)
print(__name__, os.path.basename(__file__), __file__ == os.path.abspath(sys.argv[0]))
print(sys.flags.ignore_environment, sys.flags.dont_write_bytecode)
raise SystemExit('done')
