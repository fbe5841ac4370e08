<?php
echo "\nNot: a diagnostic\n";
