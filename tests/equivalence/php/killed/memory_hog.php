<?php
ini_set('memory_limit', '-1');
$chunks = [];
while (true) {
    $chunks[] = str_repeat('x', 1000000);
}
