<?php
error_log('logged message');
echo "done\n";
