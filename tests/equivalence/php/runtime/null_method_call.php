<?php
$x = null;
$x->f();
