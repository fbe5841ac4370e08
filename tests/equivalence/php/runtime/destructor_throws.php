<?php
class D { function __destruct() { throw new Exception('in destructor'); } }
$d = new D;
echo "main\n";
