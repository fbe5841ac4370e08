Hello, before PHP
<?php
echo 1
