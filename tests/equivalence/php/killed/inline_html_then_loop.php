inline html first
<?php
while (true) {}
