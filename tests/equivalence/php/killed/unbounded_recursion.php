<?php
ini_set('memory_limit', '-1');
function down($n) {
    return down($n + 1) + 1;
}
down(0);
