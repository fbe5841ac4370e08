<?php
trigger_error('fatal user error', E_USER_ERROR);
echo "never\n";
