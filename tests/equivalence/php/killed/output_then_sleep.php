<?php
echo "waiting\n";
sleep(60);
