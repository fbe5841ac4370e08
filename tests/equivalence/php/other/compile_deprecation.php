<?php
function f($a = 1, $b) { return $b; }
echo f(1, 2), "\n";
