<?php
fwrite(STDERR, "PHP Parse error:  syntax error, unexpected end of file in prog.php on line 3\n");
exit(255);
