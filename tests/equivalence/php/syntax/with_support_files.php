<?php
require 'helper.php';
echo helper(
