<?php
trigger_error('careful', E_USER_WARNING);
echo "after\n";
