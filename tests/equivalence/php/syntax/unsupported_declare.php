<?php
declare(foo=1);
echo "ran\n";
