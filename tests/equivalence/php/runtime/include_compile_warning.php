<?php
require 'helper.php';
echo "after\n";
