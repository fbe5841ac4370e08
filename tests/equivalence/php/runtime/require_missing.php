<?php
require 'missing.php';
