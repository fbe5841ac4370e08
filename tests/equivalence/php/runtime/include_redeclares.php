<?php
function helper() {}
require 'helper.php';
