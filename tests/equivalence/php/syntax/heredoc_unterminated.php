<?php
$s = <<<EOT
abc
