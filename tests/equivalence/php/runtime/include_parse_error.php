<?php
echo "main\n";
include 'helper.php';
echo "after include\n";
