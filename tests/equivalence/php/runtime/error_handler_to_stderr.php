<?php
set_error_handler(function ($no, $str) { fwrite(STDERR, "handled: $str\n"); return true; });
echo $undefined;
echo "end\n";
