<?php
for ($i = 0; $i < 3; $i++) { echo "out $i\n"; fwrite(STDERR, "err $i\n"); }
