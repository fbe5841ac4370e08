<?php
class Phar {}
echo "ok\n";
