<?php
fwrite(STDERR, "err\n");
exit(0);
