<?php
function f() {}
function f() {}
echo 1;
