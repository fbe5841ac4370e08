<?php
echo $undefined_first;
echo "then\n";
