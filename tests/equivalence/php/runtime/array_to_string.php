<?php
$a = [1];
echo "v: " . $a . "\n";
