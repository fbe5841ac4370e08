<?php
$l = fgets(STDIN);
echo $l
