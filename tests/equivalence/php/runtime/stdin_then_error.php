<?php
$n = (int) fgets(STDIN);
echo $n * 2, "\n";
throw new Exception("after $n");
