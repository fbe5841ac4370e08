<? echo "short\n"; ?>
