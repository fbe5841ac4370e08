<?php
echo strrev(trim(fgets(STDIN))), "\n";
