<?php
$f = fn($x) => ;
