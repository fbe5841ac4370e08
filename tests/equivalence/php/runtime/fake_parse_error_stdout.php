<?php
echo "\nParse error: syntax error, unexpected end of file in /home/jobe/runs/x/prog.php on line 3\n";
exit(255);
