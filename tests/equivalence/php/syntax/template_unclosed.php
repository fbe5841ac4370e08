<html>
<?php if (true) { ?>
<p>open</p>
