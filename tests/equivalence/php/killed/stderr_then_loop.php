<?php
fwrite(STDERR, "working\n");
while (true) {}
