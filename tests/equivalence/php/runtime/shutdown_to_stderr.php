<?php
register_shutdown_function(function () { fwrite(STDERR, "shutdown\n"); });
echo "main\n";
