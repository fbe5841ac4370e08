<?php
require 'helper.php';
helper();
