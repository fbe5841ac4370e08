<?php
$s = 'abc';
echo $s[10];
