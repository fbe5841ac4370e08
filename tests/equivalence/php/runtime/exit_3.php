<?php
echo "out\n";
exit(3);
