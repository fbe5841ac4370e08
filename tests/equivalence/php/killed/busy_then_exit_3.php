<?php
$t = hrtime(true);
while (hrtime(true) - $t < 150000000) {}
exit(3);
