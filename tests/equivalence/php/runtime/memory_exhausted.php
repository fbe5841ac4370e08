<?php
$s = str_repeat('x', 200 * 1024 * 1024);
echo strlen($s);
