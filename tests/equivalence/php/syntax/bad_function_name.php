<?php
function 1f() {}
