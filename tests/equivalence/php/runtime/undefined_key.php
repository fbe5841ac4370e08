<?php
$a = [];
echo $a['k'];
