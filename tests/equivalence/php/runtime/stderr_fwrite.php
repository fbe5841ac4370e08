<?php
echo "out\n";
fwrite(STDERR, "to stderr\n");
