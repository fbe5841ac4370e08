raise SystemExit('shadowed argparse ran')
