<?php
echo $nope;
echo "after\n";
