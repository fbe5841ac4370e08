<?php
echo basename(__FILE__), "\n";
