<?php
echo ini_get('display_errors'), "\n";
