<?php
print_r($argv);
echo basename(__FILE__), ' ', $argc, "\n";
fwrite(STDERR, basename($_SERVER['SCRIPT_NAME']) . "\n");
