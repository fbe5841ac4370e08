<?php
include 'inc.php';
while (true) {}
