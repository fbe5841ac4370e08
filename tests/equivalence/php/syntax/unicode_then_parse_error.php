<?php
echo "héllo wörld ✓ 日本\n";
$x = [1, 2;
