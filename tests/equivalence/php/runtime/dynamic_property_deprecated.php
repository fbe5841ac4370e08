<?php
class A {}
$a = new A;
$a->x = 1;
echo "set\n";
