raise SystemExit("the check imported this re.py")
