<?php
$y = 1;
const X = $y;
